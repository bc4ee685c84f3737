"""Efficient strength, break-even strength and the alignment tax (PAPER.md §3.4).

r* maximizes U(r) = w·ΔH(r) + (1 − w)·ΔB(r), w the weight on helpfulness (the literature's
U = α·helpful + (1 − α)·harmless), on the *fitted* laws of one alignment and one
helpfulness task, optionally only where the measured drift KL stays under a ceiling. r* is chosen on
a validation split of the items and reported with the held-out split's measured changes.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import numpy as np

from steertax.analysis.laws import item_matrix, law_curve
from steertax.tasks.drift import DRIFT_METRICS

__all__ = ["law_function", "efficient_strength", "split_items", "interp_mean", "tax_table"]


def law_function(fit: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray] | None:
    """The curve of a fitted law (the selected one, for a task's fit), or None if it failed."""
    return law_curve(fit)


def split_items(items: Sequence[str], fraction: float, seed: int = 0) -> tuple[set[str], set[str]]:
    """Deterministic validation/test split by a hash of the item id."""
    val = set()
    for it in items:
        h = int(hashlib.sha256(f"{seed}:{it}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        if h < fraction:
            val.add(it)
    return val, set(items) - val


def interp_mean(
    records: Sequence[dict[str, Any]], metric: str, r: float, scorer: str | None = None, items: set[str] | None = None
) -> float:
    rs = [x for x in records if items is None or str(x["item"]) in items]
    S, _, Y = item_matrix(rs, metric, scorer)
    if len(S) == 0:
        return float("nan")
    y = np.nanmean(Y, axis=0)
    return float(np.interp(r, S, y))


def efficient_strength(
    fB: Callable[[np.ndarray], np.ndarray],
    fH: Callable[[np.ndarray], np.ndarray],
    r_range: tuple[float, float],
    helpfulness_weight: float = 0.5,
    kl: Callable[[np.ndarray], np.ndarray] | None = None,
    kl_ceiling: float | None = None,
) -> dict[str, Any]:
    lo, hi = r_range
    r = np.linspace(lo, hi, 4001)
    dB = fB(r) - fB(np.asarray([0.0]))[0]
    dH = fH(r) - fH(np.asarray([0.0]))[0]
    w = helpfulness_weight
    U = w * dH + (1 - w) * dB
    allowed = np.ones_like(r, dtype=bool)
    if kl is not None and kl_ceiling is not None:
        allowed = kl(r) <= kl_ceiling
    Um = np.where(allowed, U, -np.inf)
    k = int(np.argmax(Um))
    # break-even: dB/dr = -dH/dr, i.e. the net gain dB + dH stops rising (first peak on r > 0)
    net = dB + dH
    g = np.gradient(net, r)
    be = None
    for j in range(1, len(r)):
        if r[j] > 0 and g[j - 1] > 0 >= g[j]:
            be = float(r[j])
            break
    return {
        "r_star": float(r[k]),
        "U_star": float(U[k]),
        "dB_star": float(dB[k]),
        "dH_star": float(dH[k]),
        "helpfulness_weight": w,
        "break_even": be,
        "kl_ceiling": kl_ceiling,
        "at_boundary": bool(k in (0, len(r) - 1)),
        "curve": {"r": r[::40].tolist(), "U": U[::40].tolist(), "dB": dB[::40].tolist(), "dH": dH[::40].tolist()},
    }


def tax_table(entries: dict[str, dict[str, Any]], records_by_entry: dict[str, list[dict[str, Any]]], r_star: float) -> list[dict[str, Any]]:
    """Per benchmark: base score at r = 0, score at r*, tax % = (base − steered)/base·100 (negative =
    improvement; for drift, whose metric grows with damage, the change is reported without a %)."""
    rows = []
    for name, e in entries.items():
        recs = records_by_entry[name]
        metric, scorer = e["metric"], e["scorer"]
        base = interp_mean(recs, metric, 0.0, scorer)
        at = interp_mean(recs, metric, r_star, scorer)
        row = {"task": name, "axis": e["axis"], "metric": metric, "base": base, "at_r_star": at, "r_star": r_star}
        if e["axis"] == "helpfulness" and metric not in DRIFT_METRICS and base:
            row["tax_percent"] = (base - at) / base * 100
        else:
            row["tax_percent"] = None
        if name.startswith("over_refusal"):
            row["helpful_rate_safe"] = {"base": base, "at_r_star": at}
            row["harmless_rate_unsafe"] = {
                "base": interp_mean(recs, "harmless", 0.0, scorer),
                "at_r_star": interp_mean(recs, "harmless", r_star, scorer),
            }
        rows.append(row)
    return rows
