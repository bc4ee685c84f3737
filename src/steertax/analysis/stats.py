"""Paired statistics over items: the change of a mean from a base to another setting with a paired-bootstrap
CI, the alignment tax % with its CI from the same resamples, the mean tax over benchmarks, and the ratio of
two paired changes from one base.

The tax % is only computed where the base is far enough from 0 (:data:`TAX_BASE_FLOOR`), and no bootstrap
resample is ever dropped: where a resample's statistic does not exist (its base mean below the floor, a ratio's
denominator exactly 0), it is kept as an unknown value that could lie anywhere, placed below everything for
the 2.5 % point and above everything for the 97.5 % point (:func:`_ci_with_unknowns`). The CI is thus
conservative (it contains the percentile CI for any value those resamples might take), and it is None when
the unknowns reach into its ends (more than about 2.5 % of the resamples). ``n_boot_below_floor`` (and
``n_boot_undefined`` for the ratio) counts them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TAX_BASE_FLOOR", "paired_change", "mean_tax", "paired_ratio"]

TAX_BASE_FLOOR = 0.05
"""The smallest |base mean| a tax % = (base − other)/base·100 is computed for. The helpfulness scores the tax
is reported on are rates and probabilities in [0, 1]; below 0.05 a percentage of a near-zero number is noise (a
change of 0.01 already reads as a 20 % tax), so there only the absolute change (``delta``, with its CI) is
reported, and ``tax_note`` says why. The same floor applies to every bootstrap resample's base mean: a resample
below it has no tax %; rather than be dropped (which would narrow the CI towards the resamples that happen to
have a large base) it is kept as an unknown beyond either end of the CI (see the module docstring), and
``n_boot_below_floor`` counts such resamples; with too many of them ``tax_ci95`` is None."""


def _paired(base: dict[str, float], other: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """The two settings' finite values on their common items, in a fixed (sorted-id) order."""
    items = sorted(set(base) & set(other))
    b = np.asarray([base[i] for i in items], dtype=float)
    o = np.asarray([other[i] for i in items], dtype=float)
    ok = np.isfinite(b) & np.isfinite(o)
    return b[ok], o[ok]


def _boot_idx(n: int, n_boot: int, seed: int) -> np.ndarray:
    """The bootstrap resamples of ``n`` items (one row per resample); the same ``seed`` and ``n`` give the
    same resamples, which is how :func:`mean_tax` reuses each benchmark's :func:`paired_change` resamples."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n)) if n_boot and n else np.zeros((0, n), dtype=int)


def _tax_replicates(b: np.ndarray, o: np.ndarray, idx: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """The tax % of every resample in ``idx`` and which resamples have a base mean below ``floor`` (where the
    tax % does not exist: unknowns for :func:`_ci_with_unknowns`)."""
    bb, ob = b[idx].mean(axis=1), o[idx].mean(axis=1)
    below = np.abs(bb) < floor
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (bb - ob) / bb * 100
    return t, below


def _ci_with_unknowns(values: np.ndarray, unknown: np.ndarray) -> list[float] | None:
    """The 95% percentile interval of bootstrap ``values`` where the resamples flagged ``unknown`` have no
    value: each is put below every value for the 2.5 % point and above every value for the 97.5 % point, so
    the interval holds whatever they would have been. None when an end is unbounded (too many unknowns).
    With no unknowns it is the plain percentile interval."""
    with np.errstate(invalid="ignore"):
        lo = float(np.percentile(np.where(unknown, -np.inf, values), 2.5))
        hi = float(np.percentile(np.where(unknown, np.inf, values), 97.5))
    return [lo, hi] if np.isfinite(lo) and np.isfinite(hi) else None


def paired_change(
    base: dict[str, float], other: dict[str, float], *, n_boot: int = 1000, seed: int = 0, floor: float = TAX_BASE_FLOOR
) -> dict[str, Any]:
    """Mean of ``other`` − ``base`` over their common items with a paired-bootstrap 95% CI, and the tax
    % (base − other)/base·100 with its CI from the same resamples.

    The tax % is None when |base mean| < ``floor`` (:data:`TAX_BASE_FLOOR`). Resamples whose base mean is
    below the floor are counted (``n_boot_below_floor``) and kept as unknowns beyond either end of the tax CI,
    which is None when they reach into its ends. ``tax_note`` says why either is missing, or that the CI
    holds such resamples."""
    b, o = _paired(base, other)
    n = len(b)
    if n == 0:
        return {
            "n": 0,
            "base": None,
            "value": None,
            "delta": None,
            "delta_ci95": None,
            "tax_percent": None,
            "tax_ci95": None,
            "n_boot": n_boot,
            "n_boot_below_floor": None,
            "tax_note": "no item has both a base and a steered score",
        }
    idx = _boot_idx(n, n_boot, seed)
    bm, om = b.mean(), o.mean()
    d_boot = o[idx].mean(axis=1) - b[idx].mean(axis=1)
    out: dict[str, Any] = {"n": n, "base": float(bm), "value": float(om), "delta": float(om - bm)}
    out["delta_ci95"] = [float(x) for x in np.percentile(d_boot, [2.5, 97.5])] if n_boot and n > 1 else None
    out.update(tax_percent=None, tax_ci95=None, n_boot=n_boot, n_boot_below_floor=None, tax_note=None)
    if abs(bm) < floor:
        out["tax_note"] = (
            f"base mean {bm:.3g} is below the floor {floor:g}: a percentage of a near-zero number is noise, "
            "so only the absolute change is reported"
        )
        return out
    out["tax_percent"] = float((bm - om) / bm * 100)
    if not n_boot or n < 2:
        out["tax_note"] = "no bootstrap (n_boot = 0 or one item): no CI for the tax %"
        return out
    t_boot, below = _tax_replicates(b, o, idx, floor)
    k = int(below.sum())
    out["n_boot_below_floor"] = k
    out["tax_ci95"] = _ci_with_unknowns(t_boot, below)
    if k:
        where = f"{k} of {n_boot} bootstrap resamples have a base mean below the floor {floor:g}, where the tax % does not exist"
        out["tax_note"] = (
            f"{where}: too many to place beyond the CI's ends, so no CI for the tax % (the change's CI stands)"
            if out["tax_ci95"] is None
            else f"{where}: kept as unknowns beyond either end of the CI, which is conservative"
        )
    return out


def mean_tax(
    pairs: dict[str, tuple[dict[str, float], dict[str, float]]], *, n_boot: int = 1000, seed: int = 0, floor: float = TAX_BASE_FLOOR
) -> dict[str, Any]:
    """The mean tax % over benchmarks, ``pairs`` = {benchmark: (base scores by item, other scores by item)},
    with a bootstrap 95% CI.

    Only benchmarks whose tax % exists (|base mean| ≥ ``floor``) are averaged; ``mean_tax_over`` names them
    and ``mean_tax_excluded`` gives the others with the reason. The CI resamples items within each benchmark,
    independently across benchmarks (they are independent samples: the first benchmark averaged uses the
    resamples its own :func:`paired_change` uses for the same ``seed``, the k-th an independent stream seeded by
    (``seed``, k)), and takes each resample's unweighted mean of the benchmarks' tax %. A resample
    in which any benchmark's base mean is below the floor has no mean: it is kept as an unknown beyond either
    end of the CI (``n_boot_below_floor`` counts them), and the CI is None, with ``mean_tax_note`` saying why,
    when they reach into its ends or a benchmark has no bootstrap."""
    over: list[str] = []
    excluded: dict[str, str] = {}
    points: list[float] = []
    reps: list[np.ndarray] = []
    unknown = np.zeros(n_boot, dtype=bool)
    notes: list[str] = []
    for name, (base, other) in pairs.items():
        b, o = _paired(base, other)
        if len(b) == 0:
            excluded[name] = "no item has both scores"
            continue
        bm, om = float(b.mean()), float(o.mean())
        if abs(bm) < floor:
            excluded[name] = f"base mean {bm:.3g} below the floor {floor:g} (no tax %)"
            continue
        over.append(name)
        points.append((bm - om) / bm * 100)
        if not n_boot or len(b) < 2:
            notes.append(f"{name}: no bootstrap (n_boot = 0 or one item)")
            continue
        k = len(over) - 1  # independent resamples per benchmark, even where two have as many items
        idx = _boot_idx(len(b), n_boot, seed) if k == 0 else np.random.default_rng([seed, k]).integers(0, len(b), size=(n_boot, len(b)))
        t, below = _tax_replicates(b, o, idx, floor)
        reps.append(np.where(below, 0.0, t))  # 0.0: a placeholder, the resample is an unknown
        unknown |= below
    out: dict[str, Any] = {
        "mean_tax_percent": float(np.mean(points)) if points else None,
        "mean_tax_ci95": None,
        "mean_tax_over": over,
        "mean_tax_excluded": excluded,
        "n_boot_below_floor": int(unknown.sum()) if over and not notes else None,
        "mean_tax_note": None,
    }
    if not over:
        out["mean_tax_note"] = "no benchmark has a tax % (every base is below the floor or has no items)"
    elif notes:
        out["mean_tax_note"] = "no CI for the mean tax: " + "; ".join(notes)
    else:
        out["mean_tax_ci95"] = _ci_with_unknowns(np.mean(reps, axis=0), unknown)
        k = int(unknown.sum())
        if k:
            where = f"{k} of {n_boot} resamples have a benchmark's base mean below the floor {floor:g} (no tax % there)"
            out["mean_tax_note"] = (
                f"no CI for the mean tax: {where}, too many to place beyond the CI's ends"
                if out["mean_tax_ci95"] is None
                else f"{where}: kept as unknowns beyond either end of the CI, which is conservative"
            )
    return out


def paired_ratio(base: dict[str, float], a: dict[str, float], b: dict[str, float], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The ratio (mean b − mean base)/(mean a − mean base) of two changes from one base, on the items all three
    have, with a paired-bootstrap 95% CI: both changes are computed on the same item resamples.

    The ratio is undefined, and None with a ``reason``, when the denominator's own 95% CI includes 0 (or there
    is no CI: n_boot = 0 or one item). A resample whose denominator is exactly 0 has no ratio: it is kept as an
    unknown beyond either end of the CI (``n_boot_undefined`` counts them), which is None when they reach into
    its ends."""
    items = sorted(set(base) & set(a) & set(b))
    x0 = np.asarray([base[i] for i in items], dtype=float)
    xa = np.asarray([a[i] for i in items], dtype=float)
    xb = np.asarray([b[i] for i in items], dtype=float)
    ok = np.isfinite(x0) & np.isfinite(xa) & np.isfinite(xb)
    x0, xa, xb = x0[ok], xa[ok], xb[ok]
    n = len(x0)
    out: dict[str, Any] = {"n": n, "ratio": None, "ratio_ci95": None, "denominator_ci95": None, "n_boot_undefined": None, "reason": None}
    if n == 0:
        out["reason"] = "no item has all three scores"
        return out
    da, db = float(xa.mean() - x0.mean()), float(xb.mean() - x0.mean())
    if not n_boot or n < 2:
        out["reason"] = "no bootstrap (n_boot = 0 or one item): cannot tell whether the denominator differs from 0"
        return out
    idx = _boot_idx(n, n_boot, seed)
    m0 = x0[idx].mean(axis=1)
    da_r, db_r = xa[idx].mean(axis=1) - m0, xb[idx].mean(axis=1) - m0
    lo, hi = (float(v) for v in np.percentile(da_r, [2.5, 97.5]))
    out["denominator_ci95"] = [lo, hi]
    if lo <= 0 <= hi or da == 0:
        out["reason"] = f"the denominator's change {da:.3g} has a 95% CI [{lo:.3g}, {hi:.3g}] that includes 0: the ratio is undefined"
        return out
    out["ratio"] = db / da
    with np.errstate(divide="ignore", invalid="ignore"):
        r = db_r / da_r
    undefined = da_r == 0
    out["n_boot_undefined"] = int(undefined.sum())
    out["ratio_ci95"] = _ci_with_unknowns(r, undefined)
    if out["ratio_ci95"] is None:
        out["reason"] = f"{int(undefined.sum())} of {n_boot} resamples have a zero denominator (no ratio): no CI for the ratio"
    return out
