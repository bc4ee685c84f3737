"""The paper's laws as claims to test: candidate curves fitted to measured sweeps, chosen by evidence.

Every task's curve is fitted with several candidate laws (scipy ``curve_fit`` on the item-mean
curve; 95% CIs from refitting bootstrap resamples of the items, each resample keeping an item's
whole curve). The law with the lowest AICc is selected and drives r*, the break-even strength and
the frontier; every candidate is kept with its AIC, AICc and R², and the paper's own law is always
among them, so the report can say plainly whether it describes the data. AICc counts the strengths as
independent points of equal variance, though they share their items; beside it every candidate carries
its χ² and AIC on the generalized-least-squares likelihood of the item-mean curve (:func:`gls_scores`),
the evidence figure that counts the shared items (not computed where a strength is saturated; docs/DESIGN.md
says why it does not yet select).

Candidates (``r`` = strength; ``c`` = chance level of a choice-normalized probability):

- ``constant``            y = h0                                   (no effect: the task does not move)
- ``linear``              y = h0 + h1·r
- ``quadratic``           y = h0 + h1·r + h2·r²
- ``tanh``                B = tanh(a·r + b0)                       (the paper's alignment law; a = cΔ/2)
- ``tanh_free``           B = h0 + A·tanh(a·r + b0)                (tanh with free asymptotes)
- ``inverse_quadratic``   H = 1/(1 + a + a·(b²/2)·r²)              (the paper's helpfulness law; b = σ)
- ``inverse_quadratic_floor``   H = (1 − 2c)/(1 + a + a(b²/2)r²) + c  (the paper's 0.5/(…) + 0.25)
- ``inverse_quadratic_shifted`` the paper's form peaking at r0 instead of 0 (floor variant with c)
- ``exp_decline``         H = h0 + A·exp(−k·r)                     (decline at first order to a floor)
- ``bell``                B = h0 + A·exp(−(r − r0)²/(2w²))         (alignment that peaks and falls on both sides)

Peaks (r0) are confined to the measured range: a "peak" outside it is a monotone trend, which the
other candidates describe. A curve that moves while no law beats the constant is reported as such.

The paper's small-|r| claims are tested directly (:func:`paper_law_test`): near r = 0, helpfulness
has no first-order term (h1 = 0; the loss is quadratic) and alignment rises linearly (h2 = 0), in a
local quadratic fit with bootstrap CIs. Each verdict states its test and threshold; "can't tell" is
an allowed answer.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.optimize import curve_fit
from scipy.stats import norm

__all__ = [
    "LAWS",
    "Law",
    "get_law",
    "candidate_laws",
    "fit_law",
    "fit_task",
    "paper_law_test",
    "tanh_law",
    "help_law",
    "help_law_floor",
    "make_floor_law",
    "item_matrix",
    "law_curve",
    "aicc",
    "SELECTION_THRESHOLD",
    "gls_scores",
    "mean_curve_covariance",
    "paper_gap",
    "NEGLIGIBLE_SHARE",
    "MIN_LOCAL_POINTS",
    "ADEQUATE_R2",
    "movement",
]

#: ΔAICc below which two laws are called indistinguishable (Burnham & Anderson's rule of thumb).
SELECTION_THRESHOLD = 2.0
#: a strength whose items' variance is below this share of the mean variance is saturated (B = ±1 on every item):
#: no GLS likelihood is computed for such a curve
SATURATED = 0.01
#: a term "vanishes" in practice when its contribution at the window edge is below this share of the
#: other term's (used only when its 95% CI excludes 0).
NEGLIGIBLE_SHARE = 0.2
#: the local fit (3 parameters) needs at least this many strengths in the small-|r| window.
MIN_LOCAL_POINTS = 5
#: a selected (non-constant) law "describes the curve" when its R² on the item means reaches this.
ADEQUATE_R2 = 0.8


def tanh_law(r: np.ndarray, a: float, b0: float) -> np.ndarray:
    return np.tanh(a * r + b0)


def tanh_free(r: np.ndarray, h0: float, A: float, a: float, b0: float) -> np.ndarray:
    return h0 + A * np.tanh(a * r + b0)


def bell(r: np.ndarray, h0: float, A: float, r0: float, w: float) -> np.ndarray:
    return h0 + A * np.exp(-0.5 * ((r - r0) / w) ** 2)


def help_law(r: np.ndarray, a: float, b: float) -> np.ndarray:
    return 1.0 / (1.0 + a + a * (b * b / 2.0) * r * r)


def make_floor_law(chance: float) -> Callable[..., np.ndarray]:
    def law(r: np.ndarray, a: float, b: float) -> np.ndarray:
        return (1 - 2 * chance) / (1.0 + a + a * (b * b / 2.0) * r * r) + chance

    return law


def make_shifted_law(chance: float) -> Callable[..., np.ndarray]:
    def law(r: np.ndarray, a: float, b: float, r0: float) -> np.ndarray:
        d = r - r0
        return (1 - 2 * chance) / (1.0 + a + a * (b * b / 2.0) * d * d) + chance

    return law


def help_law_floor(r: np.ndarray, a: float, b: float, chance: float = 0.25) -> np.ndarray:
    return make_floor_law(chance)(r, a, b)


def constant(r: np.ndarray, h0: float) -> np.ndarray:
    return np.full_like(np.asarray(r, dtype=float), h0)


def linear(r: np.ndarray, h0: float, h1: float) -> np.ndarray:
    return h0 + h1 * r


def quadratic(r: np.ndarray, h0: float, h1: float, h2: float) -> np.ndarray:
    return h0 + h1 * r + h2 * r * r


def exp_decline(r: np.ndarray, h0: float, A: float, k: float) -> np.ndarray:
    return h0 + A * np.exp(np.clip(-k * r, -50, 50))


@dataclass(frozen=True)
class Law:
    name: str
    formula: str
    fn: Callable[..., np.ndarray]
    params: tuple[str, ...]
    p0: tuple[float, ...]
    bounds: tuple[tuple[float, ...], tuple[float, ...]]
    paper: bool = False
    chance: float | None = None


_INF = np.inf
LAWS: dict[str, Law] = {
    "constant": Law("constant", "y = h0", constant, ("h0",), (0.0,), ((-_INF,), (_INF,))),
    "linear": Law("linear", "y = h0 + h1*r", linear, ("h0", "h1"), (0.0, 0.0), ((-_INF, -_INF), (_INF, _INF))),
    "quadratic": Law(
        "quadratic", "y = h0 + h1*r + h2*r^2", quadratic, ("h0", "h1", "h2"), (0.0, 0.0, 0.0), ((-_INF, -_INF, -_INF), (_INF, _INF, _INF))
    ),
    "tanh": Law("tanh", "B = tanh(a*r + b0)", tanh_law, ("a", "b0"), (0.1, 0.0), ((-_INF, -20.0), (_INF, 20.0)), paper=True),
    "tanh_free": Law(
        "tanh_free",
        "B = h0 + A*tanh(a*r + b0)",
        tanh_free,
        ("h0", "A", "a", "b0"),
        (0.0, 1.0, 0.1, 0.0),
        ((-1.0, 0.0, -_INF, -20.0), (1.0, 2.0, _INF, 20.0)),
    ),
    "bell": Law(
        "bell",
        "B = h0 + A*exp(-(r - r0)^2/(2w^2))",
        bell,
        ("h0", "A", "r0", "w"),
        (0.0, 1.0, 0.0, 1.0),
        ((-2.0, -2.0, -_INF, 1e-6), (2.0, 2.0, _INF, _INF)),
    ),
    "inverse_quadratic": Law(
        "inverse_quadratic", "H = 1/(1 + a + a*(b^2/2)*r^2)", help_law, ("a", "b"), (1.0, 0.1), ((0.0, 0.0), (_INF, _INF)), paper=True
    ),
    "exp_decline": Law(
        "exp_decline", "H = h0 + A*exp(-k*r)", exp_decline, ("h0", "A", "k"), (0.0, 0.1, 0.05), ((-_INF, -_INF, -_INF), (_INF, _INF, _INF))
    ),
}


def floor_law(chance: float) -> Law:
    return Law(
        "inverse_quadratic_floor",
        f"H = {1 - 2 * chance:g}/(1 + a + a*(b^2/2)*r^2) + {chance:g}",
        make_floor_law(chance),
        ("a", "b"),
        (1.0, 0.1),
        ((0.0, 0.0), (_INF, _INF)),
        paper=True,
        chance=chance,
    )


def shifted_law(chance: float | None) -> Law:
    c = chance or 0.0
    head = f"{1 - 2 * c:g}/" if c else "1/"
    tail = f" + {c:g}" if c else ""
    return Law(
        "inverse_quadratic_shifted",
        f"H = {head}(1 + a + a*(b^2/2)*(r - r0)^2){tail}",
        make_shifted_law(c),
        ("a", "b", "r0"),
        (1.0, 0.1, 0.0),
        ((0.0, 0.0, -_INF), (_INF, _INF, _INF)),
        chance=chance,
    )


def get_law(name: str, chance: float | None = None) -> Law:
    """A law by name (the chance-floored variants need ``chance``)."""
    if name == "inverse_quadratic_floor":
        if chance is None:
            raise ValueError("inverse_quadratic_floor needs the task's chance level")
        return floor_law(chance)
    if name == "inverse_quadratic_shifted":
        return shifted_law(chance)
    return LAWS[name]


def candidate_laws(axis: str, chance: float | None = None) -> list[Law]:
    """The laws fitted to every task of ``axis``; the paper's own law is always among them."""
    common = [LAWS["constant"], LAWS["linear"], LAWS["quadratic"]]
    if axis == "alignment":
        return common + [LAWS["tanh"], LAWS["tanh_free"], LAWS["bell"]]
    paper = floor_law(chance) if chance else LAWS["inverse_quadratic"]
    return common + [paper, shifted_law(chance), LAWS["exp_decline"]]


def law_curve(fit: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray] | None:
    """The fitted curve of a fit dict (as returned by :func:`fit_law`), or None if the fit failed."""
    if not fit or not fit.get("ok") or not fit.get("params"):
        return None
    law = get_law(fit["law"], fit.get("chance"))
    p = [fit["params"][k]["value"] for k in law.params]
    return lambda r: law.fn(np.asarray(r, dtype=float), *p)


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


def aicc(rss: float, n: int, k: int) -> tuple[float | None, float | None]:
    """(AIC, AICc) of a least-squares fit with Gaussian errors of unknown variance."""
    if n <= 0:
        return None, None
    aic = n * math.log(max(rss, 1e-300) / n) + 2 * k
    if n - k - 1 <= 0:
        return float(aic), None
    return float(aic), float(aic + 2 * k * (k + 1) / (n - k - 1))


def _starts(law: Law, x: np.ndarray, y: np.ndarray) -> list[list[float]]:
    """A few starting points per law (the best least-squares result among them is kept)."""
    y0 = float(np.interp(0.0, x, y)) if x.min() <= 0 <= x.max() else float(y[np.argmin(np.abs(x))])
    span = float(np.ptp(x)) or 1.0
    lo, hi = float(np.min(y)), float(np.max(y))
    slope = float(np.polyfit(x, y, 1)[0]) if len(x) > 1 else 0.0
    if law.name == "tanh":
        yc = np.clip(y, -0.99, 0.99)
        s = float(np.polyfit(x, np.arctanh(yc), 1)[0]) if len(x) > 1 else 0.1
        b = math.atanh(float(np.clip(y0, -0.99, 0.99)))
        return [[s, b], [4.0 / span, b], [-4.0 / span, b]]
    if law.name == "tanh_free":
        mid, amp = (hi + lo) / 2, max((hi - lo) / 2, 1e-3)
        sgn = 1.0 if slope >= 0 else -1.0
        return [
            [float(np.clip(mid, -0.99, 0.99)), float(min(amp, 1.99)), sgn * 4.0 / span, 0.0],
            [float(np.clip(mid, -0.99, 0.99)), float(min(amp, 1.99)), sgn * 8.0 / span, -sgn * 1.0],
        ]
    if law.name.startswith("inverse_quadratic"):
        c = law.chance or 0.0
        top = (hi - c) / max(1e-6, 1 - 2 * c)
        a = max(1e-3, 1.0 / max(top, 1e-3) - 1.0)
        base = [[a, 0.1], [a, 1.0 / span], [a, 10.0 / span]]
        if law.name.endswith("shifted"):
            peak = float(x[int(np.argmax(y))])
            return [b + [peak] for b in base] + [b + [0.0] for b in base]
        return base
    if law.name == "bell":
        k = int(np.argmax(np.abs(y - np.median(y))))
        return [
            [float(np.median(y)), float(y[k] - np.median(y)), float(x[k]), span / 8],
            [float(np.median(y)), float(y[k] - np.median(y)), float(x[k]), span / 3],
        ]
    if law.name == "exp_decline":
        rate = 3.0 / span
        return [
            [lo, y0 - lo, rate if slope <= 0 else -rate],
            [lo, y0 - lo, 0.3 * rate if slope <= 0 else -0.3 * rate],
            [hi, y0 - hi, -rate if slope <= 0 else rate],
        ]
    if law.name == "constant":
        return [[float(np.mean(y))]]
    if law.name == "linear":
        return [[y0, slope]]
    if law.name == "quadratic":
        return [[y0, slope, 0.0]]
    return [list(law.p0)]


def _bounds(law: Law, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The law's parameter bounds for strengths ``x``: a peak (r0) must lie inside the measured range."""
    lo_b, hi_b = np.asarray(law.bounds[0], dtype=float), np.asarray(law.bounds[1], dtype=float)
    if "r0" in law.params and len(x):
        j = law.params.index("r0")
        lo_b[j], hi_b[j] = float(np.min(x)), float(np.max(x))
    return lo_b, hi_b


def _fit_once(law: Law, x: np.ndarray, y: np.ndarray, starts: Sequence[Sequence[float] | np.ndarray]) -> np.ndarray | None:
    ok = np.isfinite(y)
    if ok.sum() < len(law.params):
        return None
    x, y = x[ok], y[ok]
    if law.name in ("constant", "linear", "quadratic"):  # linear least squares: exact, no starts needed
        deg = len(law.params) - 1
        return np.polyfit(x, y, deg)[::-1].copy() if len(x) > deg else None
    if law.name == "tanh":
        y = np.clip(y, -0.999999, 0.999999)
    lo_b, hi_b = _bounds(law, x)
    best, best_rss = None, np.inf
    for p0 in starts:
        p0c = np.clip(np.asarray(p0, dtype=float), lo_b + 1e-9, hi_b - 1e-9)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, _ = curve_fit(law.fn, x, y, p0=list(p0c), bounds=(lo_b, hi_b), maxfev=20000)
        except (RuntimeError, ValueError):
            continue
        rss = float(np.sum((y - law.fn(x, *p)) ** 2))
        if np.isfinite(rss) and rss < best_rss:
            best, best_rss = p, rss
    return best


def fit_law(
    law: Law | str,
    strengths: np.ndarray,
    Y: np.ndarray,
    *,
    fit_range: tuple[float, float] | None = None,
    n_boot: int = 200,
    seed: int = 0,
    boot_scores: bool = False,
    boot_params: bool = False,
) -> dict[str, Any]:
    """Fit a law to the item-mean curve; bootstrap the items for 95% CIs. ``Y`` is [items, strengths].
    ``boot_params``: also return the resamples' parameters (``_boot_params``, resamples × parameters).

    The bootstrap resamples depend only on ``seed`` and the number of items, so fits of different
    laws with the same seed see the same resamples (their per-resample AICc can be compared)."""
    law = LAWS[law] if isinstance(law, str) else law
    S = np.asarray(strengths, dtype=float)
    sel = np.ones_like(S, dtype=bool) if fit_range is None else (S >= fit_range[0]) & (S <= fit_range[1])
    x, Ysel = S[sel], Y[:, sel]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are handled below
        y = np.nanmean(Ysel, axis=0)
    out: dict[str, Any] = {
        "law": law.name,
        "formula": law.formula,
        "paper": law.paper,
        "range": [float(x.min()), float(x.max())] if len(x) else None,
        "n_points": int(len(x)),
        "n_items": int(Y.shape[0]),
    }
    if law.chance is not None:
        out["chance"] = law.chance
    p = _fit_once(law, x, y, _starts(law, x, y)) if len(x) else None
    if p is None:
        out.update(params=None, r2=None, ok=False)
        return out
    fin = np.isfinite(y)
    pred = law.fn(x, *p)
    ss_res = float(np.sum((y[fin] - pred[fin]) ** 2))
    ss_tot = float(np.sum((y[fin] - np.mean(y[fin])) ** 2))
    m, k = int(fin.sum()), len(p)
    rng = np.random.default_rng(seed)
    boots, boot_aicc = [], []
    n = Ysel.shape[0]
    for _ in range(n_boot if n > 1 else 0):
        idx = rng.integers(0, n, n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            yb = np.nanmean(Ysel[idx], axis=0)
        pb = _fit_once(law, x, yb, [p])  # the full-data optimum is a good start for a resample
        if pb is not None:
            boots.append(pb)
            fb = np.isfinite(yb)
            boot_aicc.append(aicc(float(np.sum((yb[fb] - law.fn(x[fb], *pb)) ** 2)), int(fb.sum()), k)[1])
        else:
            boot_aicc.append(None)
    B = np.asarray(boots) if boots else np.empty((0, len(p)))
    params = {}
    for j, name in enumerate(law.params):
        lo, hi = np.percentile(B[:, j], [2.5, 97.5]) if len(B) >= 10 else (np.nan, np.nan)
        params[name] = {"value": float(p[j]), "ci95": [float(lo), float(hi)]}
    aic, aic_c = aicc(ss_res, m, k)
    out.update(
        params=params, r2=(1 - ss_res / ss_tot) if ss_tot > 0 else None, rss=ss_res, aic=aic, aicc=aic_c, k=k, ok=True, n_boot=len(B)
    )
    if boot_scores:
        out["_boot_aicc"] = boot_aicc
    if boot_params:
        out["_boot_params"] = B
    return out


def mean_curve_covariance(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(the item-mean curve, its covariance across strengths, that covariance's inverse) from items × strengths
    scores, on the items scored at every strength: the items' covariance / n, the inverse scaled by
    (n − p − 2)/(n − 1) so that it is unbiased (an inverted sample covariance overstates precision). None with
    fewer than p + 3 complete items, a singular covariance, or a saturated strength (its items' variance below
    SATURATED × the mean variance, as at B = ±1): there the likelihood would rest on a variance the data do not give."""
    Yc = Y[np.isfinite(Y).all(axis=1)]
    n, p = Yc.shape
    if n < p + 3:
        return None
    C = np.cov(Yc, rowvar=False).reshape(p, p) / n
    d = np.diag(C)
    if not np.all(np.isfinite(d)) or np.min(d) <= SATURATED * np.mean(d):
        return None
    if np.linalg.cond(C) > 1e12:  # collinear strengths (e.g. two that every item scores alike): no likelihood
        return None
    return Yc.mean(axis=0), C, np.linalg.inv(C) * (n - p - 2) / (n - 1)


def gls_fit(law: Law, S: np.ndarray, y: np.ndarray, cov: tuple[np.ndarray, np.ndarray, np.ndarray], start: np.ndarray) -> float | None:
    """The law's least χ² = (ȳ − f(S))ᵀ Σ⁻¹ (ȳ − f(S)) on the item-mean curve under its covariance across strengths
    (generalized least squares from the ordinary fit's optimum, and that optimum itself: the lower is kept)."""
    _, C, Ci = cov

    def chi2(p: np.ndarray) -> float:
        r = y - law.fn(S, *p)
        return float(r @ Ci @ r)

    best = chi2(start) if np.all(np.isfinite(law.fn(S, *start))) else math.inf
    lo_b, hi_b = _bounds(law, S)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, _ = curve_fit(
                law.fn, S, y, p0=list(np.clip(start, lo_b + 1e-9, hi_b - 1e-9)), sigma=C, absolute_sigma=True,
                bounds=(lo_b, hi_b), maxfev=20000,
            )  # fmt: skip
        best = min(best, chi2(p))
    except (RuntimeError, ValueError):
        pass
    return best if math.isfinite(best) else None


def gls_scores(laws: Sequence[Law], S: np.ndarray, Y: np.ndarray, fits: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Every fitted law's χ² on the item-mean curve under its covariance across strengths, and its AIC on that
    likelihood, χ² + 2k. The strengths share their items, so their means are correlated and unequally noisy; this
    likelihood counts that (AICc on the means counted them as independent points of equal variance)."""
    S = np.asarray(S, dtype=float)
    cov = mean_curve_covariance(Y)
    if cov is None:
        return {}
    y = cov[0]
    out: dict[str, dict[str, float]] = {}
    for law in laws:
        f = fits.get(law.name, {})
        if not f.get("ok"):
            continue
        c2 = gls_fit(law, S, y, cov, np.asarray([f["params"][name]["value"] for name in law.params]))
        if c2 is not None:
            out[law.name] = {"chi2": c2, "gls_aic": c2 + 2 * len(law.params)}
    return out


def attach_gls(cands: dict[str, dict[str, Any]], selection: dict[str, Any], scores: dict[str, dict[str, float]]) -> None:
    """Put every law's χ² and AIC on the GLS likelihood of the item-mean curve (:func:`gls_scores`) beside its AICc,
    and the paper's law's and the selected law's ΔAIC (GLS) into ``selection``: the evidence figure that counts the
    shared items (descriptive; the selection is by AICc, see docs/DESIGN.md)."""
    low = min((v["gls_aic"] for v in scores.values()), default=None)
    for n, f in cands.items():
        sc = scores.get(n)
        f.update(chi2=sc["chi2"] if sc else None, gls_aic=sc["gls_aic"] if sc else None)
        f["delta_gls_aic"] = float(sc["gls_aic"] - low) if sc and low is not None else None
    sel, pn = selection.get("selected"), selection.get("paper_law")
    if sel in scores and pn in scores:
        selection["paper_law_delta_gls_aic"] = float(scores[pn]["gls_aic"] - scores[sel]["gls_aic"])


def paper_gap(selection: dict[str, Any]) -> str:
    """The paper's law's standing against the selected law, in words: ΔAICc (the selection's criterion) and ΔAIC on the
    GLS likelihood (which counts the shared items)."""
    a = selection.get("paper_law_delta_aicc")
    out = "ΔAICc = —" if a is None else f"ΔAICc = {a:.1f}"
    d = selection.get("paper_law_delta_gls_aic")
    return out + (f", ΔAIC (GLS) = {d:.1f}" if d is not None else "")


def _parsimonious(scores: dict[str, float], k: dict[str, int]) -> str:
    """The law with the fewest parameters among those within SELECTION_THRESHOLD of the lowest AICc
    (ties: the lower AICc)."""
    low = min(scores.values())
    near = [n for n, a in scores.items() if a - low < SELECTION_THRESHOLD]
    return min(near, key=lambda n: (k[n], scores[n]))


def _select(cands: dict[str, dict[str, Any]]) -> tuple[str | None, dict[str, Any]]:
    """Lowest AICc wins; laws within SELECTION_THRESHOLD of it are reported as indistinguishable, and the
    share of bootstrap resamples in which each law wins measures how stable the choice is."""
    ok = {n: f for n, f in cands.items() if f.get("ok") and f.get("aicc") is not None}
    for n, f in cands.items():
        if n not in ok:
            f["delta_aicc"] = None  # not fitted (or no AICc: too few points for its parameters)
    if not ok:
        return None, {"criterion": "AICc", "reason": "no candidate law could be fitted"}
    lowest = min(ok, key=lambda n: ok[n]["aicc"])
    for f in ok.values():
        f["delta_aicc"] = float(f["aicc"] - ok[lowest]["aicc"])
    best = _parsimonious({n: f["aicc"] for n, f in ok.items()}, {n: f["k"] for n, f in ok.items()})
    close = sorted(
        (n for n in ok if n != best and abs(ok[n]["aicc"] - ok[best]["aicc"]) < SELECTION_THRESHOLD), key=lambda n: ok[n]["delta_aicc"]
    )
    wins: dict[str, int] = {n: 0 for n in ok}
    nb = min(len(f["_boot_aicc"]) for f in ok.values())
    for b in range(nb):
        vals = {n: f["_boot_aicc"][b] for n, f in ok.items() if f["_boot_aicc"][b] is not None}
        if vals:
            wins[_parsimonious(vals, {n: ok[n]["k"] for n in vals})] += 1
    share = {n: (w / nb if nb else None) for n, w in wins.items()}
    paper = [n for n, f in ok.items() if f.get("paper")]
    runner = min((n for n in ok if n != best), key=lambda n: ok[n]["aicc"], default=None)
    info_sel = {
        "rule": (f"lowest AICc; among laws within {SELECTION_THRESHOLD:g} of it, the one with the fewest parameters (Burnham & Anderson)")
    }
    info: dict[str, Any] = {
        "criterion": "AICc",
        "threshold": SELECTION_THRESHOLD,
        "selected": best,
        **info_sel,
        "lowest_aicc": lowest,
        "indistinguishable": close,
        "bootstrap_win_share": share,
        "runner_up": runner,
        "delta_aicc_runner_up": ok[runner]["delta_aicc"] if runner else None,
    }
    if paper:
        pn = paper[0]
        d = ok[pn]["aicc"] - ok[best]["aicc"]
        info["paper_law"] = pn
        info["paper_law_delta_aicc"] = d
        info["paper_law_consistent"] = bool(d < SELECTION_THRESHOLD)
    if best == lowest:
        reason = f"lowest AICc ({ok[best]['aicc']:.1f})"
    else:
        reason = (
            f"fewest parameters ({ok[best]['k']}) among the laws within ΔAICc < {SELECTION_THRESHOLD:g} of the "
            f"lowest ({lowest}, ΔAICc = {ok[best]['delta_aicc']:.1f})"
        )
    if runner is not None and best == lowest:
        reason += f"; next {runner} at ΔAICc = {ok[runner]['delta_aicc']:.1f}"
    if close:
        reason += f"; indistinguishable (|ΔAICc| < {SELECTION_THRESHOLD:g}): {', '.join(close)}"
    best_share = share.get(best)
    if best_share is not None:
        reason += f"; wins {100 * best_share:.0f}% of bootstrap resamples"
    info["reason"] = reason
    return best, info


def _ci_excludes_zero(p: dict[str, Any]) -> bool | None:
    lo, hi = p["ci95"]
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return bool(lo > 0 or hi < 0)


def paper_law_test(S: np.ndarray, Y: np.ndarray, axis: str, r_local: float, *, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Test the paper's small-|r| claim on a local quadratic fit y = h0 + h1·r + h2·r² over |r| ≤ r_local, as an
    equivalence test.

    helpfulness: the first-order term vanishes and the loss is quadratic (h2 < 0).
    alignment: alignment rises linearly (h1 > 0) and the second-order term vanishes.

    "Vanishes" is shown, not assumed: the signed share s = (vanishing term's contribution at the window edge) /
    |the other term's|, h2·r²/|h1·r| or h1·r/|h2·r²|, is computed in every bootstrap resample (h1 and h2 are
    strongly correlated, so the ratio is read jointly, not from two intervals). **Holds** when s's 90% interval
    lies within ±NEGLIGIBLE_SHARE (two one-sided tests at 5%) and the other term has the paper's sign; **does not
    hold** when s's 95% interval lies beyond ±NEGLIGIBLE_SHARE, or the other term has the wrong sign; **can't tell** otherwise —
    an interval that merely includes 0 is absence of evidence, not a law. The window is named: ``local`` (a part of
    the sweep, symmetric about 0 where the knob has both signs) or ``global`` (it holds the whole sweep, as for an
    α or a merge scale from the base with few settings)."""
    S = np.asarray(S, dtype=float)
    inside = np.abs(S) <= r_local + 1e-12
    term = "h1" if axis == "helpfulness" else "h2"
    both = bool((S[inside] < 0).any() and (S[inside] > 0).any())
    kind = "global" if inside.all() else ("local, symmetric" if both else "local, one-sided")
    base: dict[str, Any] = {
        "term": term,
        "window": [-float(r_local), float(r_local)],
        "window_kind": kind,
        "n_points": int(inside.sum()),
        "min_points": MIN_LOCAL_POINTS,
        "negligible_share": NEGLIGIBLE_SHARE,
        "test": (
            f"local quadratic h0 + h1·r + h2·r² on |r| ≤ {r_local:.3g} ({kind} window), items bootstrapped; equivalence: "
            f"holds when the vanishing term's share of the other at the window edge is shown < {NEGLIGIBLE_SHARE:.0%} "
            "(upper 95% bound), does not hold when shown above it (lower 95% bound)"
        ),
    }
    if inside.sum() < MIN_LOCAL_POINTS:
        base.update(
            estimate=None,
            ci95=None,
            holds=None,
            verdict=f"can't tell: only {int(inside.sum())} strengths in |r| ≤ {r_local:.3g} (need {MIN_LOCAL_POINTS})",
        )
        return base
    q = fit_law("quadratic", S, Y, fit_range=(-r_local - 1e-12, r_local + 1e-12), n_boot=n_boot, seed=seed, boot_params=True)
    if not q.get("ok"):
        base.update(estimate=None, ci95=None, holds=None, verdict="can't tell: the local quadratic could not be fitted")
        return base
    Bp = q.pop("_boot_params")
    P = q["params"]
    h1, h2 = P["h1"]["value"], P["h2"]["value"]
    s1, s2 = _ci_excludes_zero(P["h1"]), _ci_excludes_zero(P["h2"])
    first, second = abs(h1) * r_local, abs(h2) * r_local**2  # contributions at the window edge
    base.update(
        estimate=P[term]["value"],
        ci95=P[term]["ci95"],
        h1=P["h1"],
        h2=P["h2"],
        first_order_at_edge=first,
        second_order_at_edge=second,
        local_fit=q,
    )

    def ci(name: str) -> str:
        lo, hi = P[name]["ci95"]
        return f"{name} = {P[name]['value']:.3g} [{lo:.3g}, {hi:.3g}]"

    if s1 is None or s2 is None or len(Bp) < 10:
        base.update(holds=None, verdict="can't tell: too few items for a bootstrap CI")
        return base
    # the vanishing term's signed share of the other term (in absolute value) at the window edge, per resample
    f_b, s_b = Bp[:, 1] * r_local, Bp[:, 2] * r_local**2
    with np.errstate(divide="ignore", invalid="ignore"):
        share_b = (f_b / np.abs(s_b)) if axis == "helpfulness" else (s_b / np.abs(f_b))
    share_b = share_b[np.isfinite(share_b)]
    share = (
        (h1 * r_local / second if second > 0 else math.inf)
        if axis == "helpfulness"
        else (h2 * r_local**2 / first if first > 0 else math.inf)
    )
    if len(share_b) < 10:
        base.update(holds=None, verdict="can't tell: the other term is 0 in too many resamples")
        return base
    lo_s, hi_s = (float(x) for x in np.percentile(share_b, [5, 95]))  # TOST: each side at 5%
    lo2, hi2 = (float(x) for x in np.percentile(share_b, [2.5, 97.5]))  # shown outside the margin: two-sided 95%
    base.update(share=share, share_ci90=[lo_s, hi_s], share_ci95=[lo2, hi2])
    where = f"near r = 0 (|r| ≤ {r_local:.3g}" + (", the whole sweep: a global window)" if kind == "global" else ")")
    shown = f"its share of the other at the edge {share:+.2f}, 90% CI [{lo_s:+.2f}, {hi_s:+.2f}]"
    name = "first-order" if axis == "helpfulness" else "second-order"
    if not s1 and not s2:
        holds, v = None, f"can't tell: neither term differs from 0 {where} ({ci('h1')}; {ci('h2')}); the task barely moves there"
    elif axis == "helpfulness" and s2 and h2 > 0:
        holds, v = False, f"no quadratic loss: {ci('h2')} is positive (helpfulness rises away from 0); the paper's law does not hold"
    elif axis != "helpfulness" and s1 and h1 < 0:
        holds, v = False, f"alignment does not rise: {ci('h1')} (it falls as r grows), {ci('h2')}"
    elif -NEGLIGIBLE_SHARE < lo_s and hi_s < NEGLIGIBLE_SHARE and (s2 and h2 < 0 if axis == "helpfulness" else s1 and h1 > 0):
        law = "the paper's quadratic law holds" if axis == "helpfulness" else "alignment rises linearly"
        holds, v = (
            True,
            f"{law} {where}: the {name} term is shown within ±{NEGLIGIBLE_SHARE:.0%} of the other ({shown}; {ci('h1')}, {ci('h2')})",
        )
    elif lo2 > NEGLIGIBLE_SHARE or hi2 < -NEGLIGIBLE_SHARE:
        what = "helpfulness changes at first order" if axis == "helpfulness" else "alignment is curved"
        above = f"the {name} term is shown beyond ±{NEGLIGIBLE_SHARE:.0%} of the other ({shown}; 95% CI [{lo2:+.2f}, {hi2:+.2f}])"
        holds, v = False, f"{what} {where}: {above}; the paper's law does not hold"
    else:
        holds, v = (
            None,
            f"can't tell {where}: the {name} term is shown neither within nor beyond ±{NEGLIGIBLE_SHARE:.0%} of the other ({shown})",
        )
    base.update(holds=holds, verdict=v)
    return base


def movement(S: np.ndarray, Y: np.ndarray) -> dict[str, Any]:
    """Does the curve move at all? Paired per-item changes from r = 0, each with a 95% CI made
    simultaneous over the strengths (Bonferroni); the curve moves if any CI excludes 0."""
    S = np.asarray(S, dtype=float)
    if not (S == 0).any() or Y.shape[0] < 2:
        return {"moves": None, "test": "paired change from r = 0 (needs r = 0 in the grid and 2+ items)"}
    z0 = int(np.flatnonzero(S == 0)[0])
    others = [j for j in range(len(S)) if j != z0]
    z = float(norm.ppf(1 - 0.025 / max(1, len(others))))
    best: dict[str, Any] = {"moves": False, "max_change": 0.0, "at_r": None, "ci95": None}
    for j in others:
        d = Y[:, j] - Y[:, z0]
        d = d[np.isfinite(d)]
        if len(d) < 2:
            continue
        m, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))
        lo, hi = m - z * se, m + z * se
        sig = lo > 0 or hi < 0
        if (sig and not best["moves"]) or (sig == best["moves"] and abs(m) > abs(best["max_change"])):
            best = {"moves": bool(sig), "max_change": m, "at_r": float(S[j]), "ci95": [lo, hi]}
    best["test"] = "paired per-item change from r = 0; 95% CIs simultaneous over strengths (Bonferroni)"
    return best


def local_window(S: np.ndarray, r_local: float | None) -> float:
    """The small-|r| window: ``r_local`` if given, else a quarter of the grid's span, widened until it
    holds MIN_LOCAL_POINTS strengths (or all of them)."""
    S = np.asarray(S, dtype=float)
    span = float(np.max(np.abs(S))) if len(S) else 0.0
    rl = float(r_local) if r_local is not None else span / 4
    order = np.sort(np.abs(S))
    need = min(MIN_LOCAL_POINTS, len(S))
    if need and (np.abs(S) <= rl + 1e-12).sum() < need:
        rl = float(order[need - 1])
    return rl


def fit_task(
    records: Sequence[dict[str, Any]],
    metric: str,
    axis: str,
    *,
    scorer: str | None = None,
    chance: float | None = None,
    r_local: float | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit every candidate law for the task's axis, select one by AICc, and test the paper's local claim.

    Returns the selected law's fit (``law``, ``params`` with ``ci95``, ``r2``, ``aicc`` …) plus
    ``candidates`` (every law's fit), ``selection`` (why this law), ``paper_law_test`` and ``local``."""
    S, _, Y = item_matrix(records, metric, scorer)
    if len(S) < 3:
        return {"law": None, "ok": False, "reason": f"need at least 3 strengths, have {len(S)}"}
    laws = candidate_laws(axis, chance)
    cands = {law.name: fit_law(law, S, Y, n_boot=n_boot, seed=seed, boot_scores=True) for law in laws}
    best, selection = _select(cands)
    for f in cands.values():
        f.pop("_boot_aicc", None)
    attach_gls(cands, selection, gls_scores(laws, S, Y, cands))
    rl = local_window(S, r_local)
    test = paper_law_test(S, Y, axis, rl, n_boot=n_boot, seed=seed)
    local = {
        "range": [-rl, rl],
        "linear": fit_law("linear", S, Y, fit_range=(-rl - 1e-12, rl + 1e-12), n_boot=n_boot, seed=seed),
        "quadratic": test.get("local_fit"),
    }
    if best is None:
        return {
            "law": None,
            "ok": False,
            "reason": selection["reason"],
            "candidates": cands,
            "selection": selection,
            "paper_law_test": test,
            "local": local,
        }
    main = dict(cands[best])
    mv = movement(S, Y)
    r2 = main.get("r2")
    if best == "constant":
        adequate = mv.get("moves") is not True
        if not adequate:
            selection["reason"] += (
                f"; but the curve does move (change {mv['max_change']:+.3g} at r = {mv['at_r']:g}, "
                "CI excludes 0): no candidate law describes it"
            )
    else:
        adequate = r2 is not None and r2 >= ADEQUATE_R2
        if not adequate:
            selection["reason"] += f"; R² = {r2 if r2 is None else round(r2, 3)} < {ADEQUATE_R2}: the law describes the curve poorly"
    selection["adequate"] = bool(adequate)
    main.update(
        candidates=cands, selection=selection, paper_law_test={k: v for k, v in test.items() if k != "local_fit"}, local=local, movement=mv
    )
    return main
