"""Paired statistics over items: the change of a mean from a base to another setting with a paired-bootstrap
CI, and the alignment tax % with its CI from the same resamples."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["paired_change"]


def paired_change(base: dict[str, float], other: dict[str, float], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mean of ``other`` − ``base`` over their common items with a paired-bootstrap 95% CI, and the tax
    % (base − other)/base·100 with its CI from the same resamples."""
    items = sorted(set(base) & set(other))
    b = np.asarray([base[i] for i in items], dtype=float)
    o = np.asarray([other[i] for i in items], dtype=float)
    ok = np.isfinite(b) & np.isfinite(o)
    b, o = b[ok], o[ok]
    n = len(b)
    if n == 0:
        return {"n": 0, "base": None, "value": None, "delta": None, "delta_ci95": None, "tax_percent": None, "tax_ci95": None}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n)) if n_boot else np.zeros((0, n), dtype=int)
    bm, om = b.mean(), o.mean()
    d_boot = o[idx].mean(axis=1) - b[idx].mean(axis=1)
    out: dict[str, Any] = {"n": n, "base": float(bm), "value": float(om), "delta": float(om - bm)}
    out["delta_ci95"] = [float(x) for x in np.percentile(d_boot, [2.5, 97.5])] if n_boot and n > 1 else None
    if bm != 0:
        out["tax_percent"] = float((bm - om) / bm * 100)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_boot = (b[idx].mean(axis=1) - o[idx].mean(axis=1)) / b[idx].mean(axis=1) * 100
        t_boot = t_boot[np.isfinite(t_boot)]
        out["tax_ci95"] = [float(x) for x in np.percentile(t_boot, [2.5, 97.5])] if len(t_boot) and n > 1 else None
    else:
        out["tax_percent"], out["tax_ci95"] = None, None
    return out
