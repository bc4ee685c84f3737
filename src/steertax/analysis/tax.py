"""Efficient strength, break-even strength and the alignment tax (PAPER.md §3.4).

r* maximizes U(r) = w·ΔH(r) + (1 − w)·ΔB(r), w the weight on helpfulness (the literature's
U = α·helpful + (1 − α)·harmless), on the *fitted* laws of one alignment and one
helpfulness task, optionally only where the measured drift KL stays under a ceiling. r* is chosen on
a validation split of the items and reported with the held-out split's measured changes; the tax table
at r* is measured on the held-out items of the tasks r* was chosen on (and on every item of the others).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Collection, Sequence

import numpy as np

from steertax.analysis.laws import item_matrix, law_curve
from steertax.analysis.stats import TAX_BASE_FLOOR, paired_change
from steertax.tasks import SAFE_PROMPT_RATE, has_trait
from steertax.tasks.drift import DRIFT_METRICS

__all__ = ["law_function", "efficient_strength", "split_items", "interp_mean", "interp_items", "tax_table", "R_GRID_POINTS"]

R_GRID_POINTS = 4001  # the grid r* is searched on: its resolution is (max − min)/(R_GRID_POINTS − 1)


def law_function(fit: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray] | None:
    """The curve of a fitted law (the selected one, for a task's fit), or None if it failed."""
    return law_curve(fit)


def split_items(items: Sequence[str], fraction: float, seed: int = 0) -> tuple[set[str], set[str]]:
    """Deterministic validation/test split by a hash of the item id (each id's side depends only on the id,
    ``fraction`` and ``seed``, not on the other ids)."""
    val = set()
    for it in items:
        h = int(hashlib.sha256(f"{seed}:{it}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        if h < fraction:
            val.add(it)
    return val, set(items) - val


def interp_mean(
    records: Sequence[dict[str, Any]], metric: str, r: float, scorer: str | None = None, items: set[str] | None = None
) -> float:
    """The item-mean of ``metric`` at strength ``r``, linearly interpolated between the measured strengths
    (only the ``items`` given, when given); NaN when no record has the metric."""
    rs = [x for x in records if items is None or str(x["item"]) in items]
    S, _, Y = item_matrix(rs, metric, scorer)
    if len(S) == 0:
        return float("nan")
    y = np.nanmean(Y, axis=0)
    return float(np.interp(r, S, y))


def interp_items(
    records: Sequence[dict[str, Any]], metric: str, r: float, scorer: str | None = None, items: set[str] | None = None
) -> dict[str, float]:
    """Per item, ``metric`` at strength ``r`` linearly interpolated between that item's measured strengths (the item
    means of these are :func:`interp_mean`'s value): the paired per-item values a bootstrap of the tax at r* needs."""
    rs = [x for x in records if items is None or str(x["item"]) in items]
    S, ids, Y = item_matrix(rs, metric, scorer)
    out: dict[str, float] = {}
    for i, row in zip(ids, np.asarray(Y, dtype=float), strict=True):
        ok = np.isfinite(row)
        if ok.any():
            out[str(i)] = float(np.interp(r, np.asarray(S)[ok], row[ok]))
    return out


def efficient_strength(
    fB: Callable[[np.ndarray], np.ndarray],
    fH: Callable[[np.ndarray], np.ndarray],
    r_range: tuple[float, float],
    helpfulness_weight: float = 0.5,
    kl: Callable[[np.ndarray], np.ndarray] | None = None,
    kl_ceiling: float | None = None,
) -> dict[str, Any]:
    """r* = argmax U(r) on a grid of :data:`R_GRID_POINTS` strengths over ``r_range`` (plus r = 0), only where
    the drift KL stays under ``kl_ceiling`` when both are given. Where several strengths tie for the maximum
    (the fitted laws do not move there), r* is the one nearest 0 and ``note`` says so. ``ok`` is False, with
    a ``reason`` and no r*, when no strength keeps the KL under the ceiling (or U is nowhere finite)."""
    lo, hi = r_range
    r = np.linspace(lo, hi, R_GRID_POINTS)
    if lo <= 0 <= hi:
        r = np.unique(np.append(r, 0.0))  # r = 0 itself, the answer when steering buys nothing
    dB = fB(r) - fB(np.asarray([0.0]))[0]
    dH = fH(r) - fH(np.asarray([0.0]))[0]
    w = helpfulness_weight
    U = w * dH + (1 - w) * dB
    allowed = np.isfinite(U)
    if kl is not None and kl_ceiling is not None:
        allowed &= np.asarray(kl(r), dtype=float) <= kl_ceiling  # NaN (no drift measured there) is not allowed
    # break-even: dB/dr = -dH/dr, i.e. the net gain dB + dH stops rising (first peak on r > 0)
    net = dB + dH
    g = np.gradient(net, r)
    be = None
    for j in range(1, len(r)):
        if r[j] > 0 and g[j - 1] > 0 >= g[j]:
            be = float(r[j])
            break
    curve = {"r": r[::40].tolist(), "U": U[::40].tolist(), "dB": dB[::40].tolist(), "dH": dH[::40].tolist()}
    common = {"helpfulness_weight": w, "break_even": be, "kl_ceiling": kl_ceiling, "curve": curve}
    if not allowed.any():
        reason = (
            f"no strength keeps drift KL under the ceiling {kl_ceiling:g}"
            if kl is not None and kl_ceiling is not None and np.isfinite(U).any()
            else "the fitted laws give no finite utility on the strength range"
        )
        return {"ok": False, "reason": reason, **common}
    Um = np.where(allowed, U, -np.inf)
    top = float(Um.max())
    tied = np.flatnonzero(Um >= top - 1e-12 * max(1.0, abs(top)))
    k = int(tied[np.argmin(np.abs(r[tied]))])
    note = (
        f"U is flat over {len(tied)} of {len(r)} strengths (the fitted laws do not move there): r* is the one nearest 0"
        if len(tied) > 1
        else None
    )
    return {
        "ok": True,
        "r_star": float(r[k]),
        "U_star": float(U[k]),
        "dB_star": float(dB[k]),
        "dH_star": float(dH[k]),
        **common,
        "at_boundary": bool(k in (0, len(r) - 1)),
        "kl_limited": bool(not allowed[np.isfinite(U)].all()),
        "note": note,
    }


def _n_items(records: Sequence[dict[str, Any]], metric: str, scorer: str | None, items: set[str] | None) -> int:
    rs = [x for x in records if items is None or str(x["item"]) in items]
    return len(item_matrix(rs, metric, scorer)[1])


def _task_name(entry: str) -> str:
    """The task of an entry key: ``over_refusal[generate]`` (a scorer's entry) -> ``over_refusal``."""
    return entry.split("[", 1)[0] if entry.endswith("]") else entry


def tax_table(
    entries: dict[str, dict[str, Any]],
    records_by_entry: dict[str, list[dict[str, Any]]],
    r_star: float,
    items: set[str] | None = None,
    chosen_on: Collection[str] | None = None,
    floor: float = TAX_BASE_FLOOR,
) -> list[dict[str, Any]]:
    """Per benchmark: base score at r = 0, score at r*, tax % = (base − steered)/base·100 (negative =
    improvement; for drift, whose metric grows with damage, the change is reported without a %; none
    either when |base| < ``floor``, :data:`~steertax.analysis.stats.TAX_BASE_FLOOR`, see ``tax_note``).

    ``items``: the held-out items, used for the entries named in ``chosen_on`` (the tasks r* was chosen on;
    every entry when ``chosen_on`` is None). Each row says which items it used (``items``: "held-out" or
    "all") and how many (``n``). An entry of a task with the
    :data:`~steertax.tasks.traits.SAFE_PROMPT_RATE` trait (its registered name: the entry's ``name``, else
    the entry's key without a ``[scorer]`` suffix) also carries ``helpful_rate_safe`` and ``harmless_rate_unsafe``."""
    rows = []
    for name, e in entries.items():
        recs = records_by_entry[name]
        metric, scorer = e["metric"], e["scorer"]
        keep = items if items is not None and (chosen_on is None or name in chosen_on) else None
        base = interp_mean(recs, metric, 0.0, scorer, keep)
        at = interp_mean(recs, metric, r_star, scorer, keep)
        row: dict[str, Any] = {
            "task": name,
            "axis": e["axis"],
            "metric": metric,
            "scorer": scorer,
            "base": base,
            "at_r_star": at,
            "r_star": r_star,
            "items": "all" if keep is None else "held-out",
            "n": _n_items(recs, metric, scorer, keep),
            "tax_percent": None,
            "tax_note": None,
        }
        if e["axis"] != "helpfulness" or metric in DRIFT_METRICS:
            row["tax_note"] = "alignment task: the change is a gain, not a tax" if e["axis"] != "helpfulness" else "drift: no %"
        elif not np.isfinite(base) or not np.isfinite(at):
            row["tax_note"] = "no score measured"
        elif abs(base) < floor:
            row["tax_note"] = f"base {base:.3g} is below the floor {floor:g}: a percentage of a near-zero number is noise"
        else:
            row["tax_percent"] = (base - at) / base * 100
            # its interval: items resampled, each item's score at r* interpolated along its own strengths (the
            # uncertainty of r* itself is not in it: r* was chosen on the other half of the items)
            pc = paired_change(interp_items(recs, metric, 0.0, scorer, keep), interp_items(recs, metric, r_star, scorer, keep), floor=floor)
            row["tax_ci95"] = pc["tax_ci95"]
        if has_trait(str(e.get("name") or _task_name(name)), SAFE_PROMPT_RATE):
            row["helpful_rate_safe"] = {"base": base, "at_r_star": at}
            row["harmless_rate_unsafe"] = {
                "base": interp_mean(recs, "harmless", 0.0, scorer, keep),
                "at_r_star": interp_mean(recs, "harmless", r_star, scorer, keep),
            }
        rows.append(row)
    return rows
