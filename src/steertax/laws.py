"""The paper's laws fitted to measured curves, with bootstrap confidence intervals over items.

- alignment: B(r) = tanh(a·r + b0)                      (Wolf et al.; a = cΔ/2, b0 = artanh B0)
- helpfulness: H(r) = 1 / (1 + a + a·(b²/2)·r²)          (a = (1 − p0)/p0, b = σ)
- helpfulness, choice-restricted with chance c: H(r) = (1 − 2c) / (1 + a + a(b²/2)r²) + c   (the
  paper's heuristic 0.5/(…) + 0.25 for four choices)
- local laws on |r| ≤ r_local: alignment linear B0 + k1·r; helpfulness quadratic p0 + k·r − k2·r²
  (a linear term allowed: curves can peak off zero), compared with a linear fit by AIC.

Fits use scipy's ``curve_fit`` on per-strength means; the 95% CIs come from refitting on bootstrap
resamples of the items (each resample keeps an item's whole curve).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.optimize import curve_fit

__all__ = ["LAWS", "fit_law", "fit_task", "tanh_law", "help_law", "help_law_floor", "item_matrix"]


def tanh_law(r: np.ndarray, a: float, b0: float) -> np.ndarray:
    return np.tanh(a * r + b0)


def help_law(r: np.ndarray, a: float, b: float) -> np.ndarray:
    return 1.0 / (1.0 + a + a * (b * b / 2.0) * r * r)


def make_floor_law(chance: float) -> Callable[..., np.ndarray]:
    def law(r: np.ndarray, a: float, b: float) -> np.ndarray:
        return (1 - 2 * chance) / (1.0 + a + a * (b * b / 2.0) * r * r) + chance

    return law


def help_law_floor(r: np.ndarray, a: float, b: float, chance: float = 0.25) -> np.ndarray:
    return make_floor_law(chance)(r, a, b)


def linear(r: np.ndarray, c0: float, k1: float) -> np.ndarray:
    return c0 + k1 * r


def quadratic(r: np.ndarray, c0: float, k: float, k2: float) -> np.ndarray:
    return c0 + k * r - k2 * r * r


@dataclass(frozen=True)
class Law:
    name: str
    formula: str
    fn: Callable[..., np.ndarray]
    params: tuple[str, ...]
    p0: tuple[float, ...]
    bounds: tuple[tuple[float, ...], tuple[float, ...]]


LAWS: dict[str, Law] = {
    "tanh": Law("tanh", "B = tanh(a*r + b0)", tanh_law, ("a", "b0"), (0.1, 0.0), ((-np.inf, -20.0), (np.inf, 20.0))),
    "inverse_quadratic": Law("inverse_quadratic", "H = 1/(1 + a + a*(b^2/2)*r^2)", help_law, ("a", "b"), (1.0, 0.1),
                             ((0.0, 0.0), (np.inf, np.inf))),
    "linear": Law("linear", "y = c0 + k1*r", linear, ("c0", "k1"), (0.0, 0.0), ((-np.inf, -np.inf), (np.inf, np.inf))),
    "quadratic": Law("quadratic", "y = c0 + k*r - k2*r^2", quadratic, ("c0", "k", "k2"), (0.0, 0.0, 0.0),
                     ((-np.inf, -np.inf, -np.inf), (np.inf, np.inf, np.inf))),
}


def floor_law(chance: float) -> Law:
    return Law(f"inverse_quadratic_floor", f"H = {1 - 2 * chance:g}/(1 + a + a*(b^2/2)*r^2) + {chance:g}",
               make_floor_law(chance), ("a", "b"), (1.0, 0.1), ((0.0, 0.0), (np.inf, np.inf)))


def item_matrix(records: Sequence[dict[str, Any]], metric: str, scorer: str | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(strengths, item ids, Y[item, strength]) from per-item records (NaN where missing)."""
    rs = [r for r in records if (scorer is None or r.get("scorer") == scorer) and r.get(metric) is not None]
    S = np.asarray(sorted({float(r["strength"]) for r in rs}))
    items = sorted({str(r["item"]) for r in rs})
    ii = {k: i for i, k in enumerate(items)}
    si = {s: j for j, s in enumerate(S)}
    Y = np.full((len(items), len(S)), np.nan)
    for r in rs:
        Y[ii[str(r["item"])], si[float(r["strength"])]] = float(r[metric])
    return S, items, Y


def _fit_once(law: Law, x: np.ndarray, y: np.ndarray, p0: Sequence[float] | None = None) -> np.ndarray | None:
    ok = np.isfinite(y)
    if ok.sum() < len(law.params):
        return None
    x, y = x[ok], y[ok]
    if law.name == "tanh":
        y = np.clip(y, -0.999999, 0.999999)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, _ = curve_fit(law.fn, x, y, p0=list(p0 if p0 is not None else law.p0), bounds=law.bounds, maxfev=20000)
        return p
    except (RuntimeError, ValueError):
        return None


def _initial(law: Law, x: np.ndarray, y: np.ndarray) -> list[float]:
    if law.name == "tanh":
        y0 = float(np.clip(np.interp(0.0, x, y) if x.min() <= 0 <= x.max() else y[np.argmin(np.abs(x))], -0.99, 0.99))
        slope = float(np.polyfit(x, np.arctanh(np.clip(y, -0.99, 0.99)), 1)[0]) if len(x) > 1 else 0.1
        return [slope, math.atanh(y0)]
    if law.name.startswith("inverse_quadratic"):
        top = float(np.nanmax(y))
        chance = 0.0
        if law.name.endswith("floor"):
            chance = float(law.fn(np.asarray([1e9]), 1.0, 1.0)[0])
            top = (top - chance) / max(1e-6, 1 - 2 * chance)
        a = max(1e-3, 1.0 / max(top, 1e-3) - 1.0)
        return [a, 0.1]
    return list(law.p0)


def fit_law(
    law: Law | str,
    strengths: np.ndarray,
    Y: np.ndarray,
    *,
    fit_range: tuple[float, float] | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit a law to the item-mean curve; bootstrap the items for 95% CIs. ``Y`` is [items, strengths]."""
    law = LAWS[law] if isinstance(law, str) else law
    S = np.asarray(strengths, dtype=float)
    sel = np.ones_like(S, dtype=bool) if fit_range is None else (S >= fit_range[0]) & (S <= fit_range[1])
    x, Ysel = S[sel], Y[:, sel]
    y = np.nanmean(Ysel, axis=0)
    start = _initial(law, x, y)
    p = _fit_once(law, x, y, start)
    out: dict[str, Any] = {"law": law.name, "formula": law.formula,
                           "range": [float(x.min()), float(x.max())] if len(x) else None, "n_points": int(len(x)),
                           "n_items": int(Y.shape[0])}
    if p is None:
        out.update(params=None, r2=None, ok=False)
        return out
    pred = law.fn(x, *p)
    ss_res = float(np.nansum((y - pred) ** 2))
    ss_tot = float(np.nansum((y - np.nanmean(y)) ** 2))
    rng = np.random.default_rng(seed)
    boots = []
    n = Ysel.shape[0]
    for _ in range(n_boot if n > 1 else 0):
        idx = rng.integers(0, n, n)
        yb = np.nanmean(Ysel[idx], axis=0)
        pb = _fit_once(law, x, yb, p)
        if pb is not None:
            boots.append(pb)
    B = np.asarray(boots) if boots else np.empty((0, len(p)))
    params = {}
    for k, name in enumerate(law.params):
        lo, hi = (np.percentile(B[:, k], [2.5, 97.5]) if len(B) >= 10 else (np.nan, np.nan))
        params[name] = {"value": float(p[k]), "ci95": [float(lo), float(hi)]}
    k = len(p)
    m = len(x)
    aic = float(m * math.log(max(ss_res, 1e-300) / m) + 2 * k) if m > 0 else None
    out.update(params=params, r2=(1 - ss_res / ss_tot) if ss_tot > 0 else None, rss=ss_res, aic=aic, ok=True,
               n_boot=len(B))
    return out


def fit_task(records: Sequence[dict[str, Any]], metric: str, axis: str, *, scorer: str | None = None,
             chance: float | None = None, r_local: float | None = None, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """The global law for the task's axis plus local laws on the small-|r| range."""
    S, items, Y = item_matrix(records, metric, scorer)
    if len(S) < 3:
        return {"law": None, "ok": False, "reason": f"need at least 3 strengths, have {len(S)}"}
    if axis == "alignment":
        main = fit_law("tanh", S, Y, n_boot=n_boot, seed=seed)
    else:
        main = fit_law(floor_law(chance) if chance else "inverse_quadratic", S, Y, n_boot=n_boot, seed=seed)
    span = float(np.max(np.abs(S)))
    rl = r_local if r_local is not None else span / 2
    local_sel = (S >= -rl) & (S <= rl)
    if local_sel.sum() < 3:  # widen until there are 3 points
        order = np.argsort(np.abs(S))
        rl = float(np.abs(S[order[min(2, len(S) - 1)]]))
    local: dict[str, Any] = {"range": [-rl, rl]}
    if axis == "alignment":
        local["linear"] = fit_law("linear", S, Y, fit_range=(-rl, rl), n_boot=n_boot, seed=seed)
    else:
        lin = fit_law("linear", S, Y, fit_range=(-rl, rl), n_boot=n_boot, seed=seed)
        quad = fit_law("quadratic", S, Y, fit_range=(-rl, rl), n_boot=n_boot, seed=seed)
        local["linear"], local["quadratic"] = lin, quad
        if lin.get("aic") is not None and quad.get("aic") is not None:
            local["quadratic_beats_linear_aic"] = bool(quad["aic"] < lin["aic"])
            local["delta_aic"] = float(lin["aic"] - quad["aic"])
    main["local"] = local
    return main
