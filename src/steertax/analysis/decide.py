"""Which method buys alignment cheapest: paired decisions at matched alignment, with one bootstrap over
items for the whole chain, multiplicity control, and the items a still-open question would need.

The data are per-item scores on **one item set per task shared by every method** (the alignment task's
items and the helpfulness task's items) and **one base** (the unaligned model's scores on the same items).
A *family* is an intervention with an ordered knob — steering over r ≥ 0, DPO over β from the base (β → ∞)
down, a merge over its scale — whose settings, in knob order from the base outwards, trace a curve of
(ΔB, ΔH) points that starts at the base (0, 0). A family with a single setting is a *point*.

**One bootstrap for the whole chain.** Each replicate resamples the item ids of every task once (the same
resample for every method, so differences are paired), recomputes every setting's ΔB and ΔH, each
family's curve and the interpolation at the matched ΔB. The interval of "ΔH at matched ΔB" therefore
carries the uncertainty of the ΔB it matches, and a difference between two methods is computed replicate
by replicate.

**Interpolation rule (stated, no extrapolation).** Along a family's knob order, starting at the base, the
first segment whose ΔB reaches the level L is used, and ΔH is linear in ΔB on it. A family whose curve
never reaches L has "not reached". A level where the segment's ΔB rise has a 95% bootstrap interval that
includes 0 (the curve is flat there, so ΔB does not pin a knob value), or that more than 2.5% of replicates
do not reach, is *ill-conditioned* and reported without a number.

**Intervals and tests.** The interval of an estimate is estimate ± z·SE with SE the bootstrap standard
deviation (normal bootstrap interval); a difference's p-value is two-sided from z = d/SE. The same SE gives
the test and the interval, so they agree. Coverage and error rates are checked by simulation in
``tests/test_decide.py``.

**Multiplicity.** Holm's step-down (family-wise error ≤ α, any dependence between the tests) or
Benjamini–Hochberg (false-discovery rate ≤ α for independent or positively dependent tests) over every
comparison of one table.

**Items needed.** For an undecided difference d with SE s at n items, the items that would decide it at
power 1 − β at the Bonferroni level α/m (Holm's strictest step, so the plan holds at any step):
n · ((z_{1−α/2m} + z_{1−β}) · s / |d|)², taking the observed d as the effect (the plan is for *this*
difference; a smaller true one needs more). The smallest difference the current n detects with that power
is (z_{1−α/2m} + z_{1−β}) · s.

**Optional stopping.** :func:`sequential_levels` spends α over the planned looks of an adaptive run
(``steertax compare --until-decided``): look k tests at α_k = α·(t_k² − t_{k−1}²), t_k the share of the item
budget used (an O'Brien–Fleming-like spending that keeps most of α for the last look). By the union bound
the chance of any false decision at any look is at most Σ α_k = α, whatever the dependence between looks,
so stopping when a comparison is decided (or continuing) keeps the error rate: conservative, but valid
without modelling the looks' correlation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
from scipy import stats as sps

from steertax.manifest import Knob

__all__ = [
    "Family",
    "ChainBootstrap",
    "interpolate_at",
    "adjust_pvalues",
    "items_needed",
    "detectable_difference",
    "sequential_levels",
    "decide",
    "default_levels",
    "finish_verdicts",
    "setting_contrasts",
    "efficient_point",
]

NOT_REACHED = "not reached"
ILL_CONDITIONED = "ill-conditioned"
UNREACHED_SHARE = 0.025  # a level more replicates than this fail to reach is ill-conditioned


@dataclass
class Family:
    """An intervention family: its settings in knob order from the base outwards and their per-item scores.

    ``scores[task]`` is an array (settings × items) aligned with the shared item list of that task; NaN
    marks an item a setting has no score for (the caller restricts to common items, so there are none in
    normal use)."""

    name: str
    knob: str
    settings: list[str]
    values: list[float | None]
    scores: dict[str, np.ndarray]
    group: str = ""  # the method family (steering, fine-tuning, merging) for reports
    # a secondary curve (the α curve of one point of a β or λ curve) is compared with the steering curves only,
    # so the number of comparisons (and the multiplicity correction) grows with methods, not with their settings
    primary: bool = True
    spec: Optional[Knob] = None  # the knob's declaration (where the base sits, the law axis), from the run manifest

    @property
    def is_curve(self) -> bool:
        return len(self.settings) >= 2


@dataclass
class ChainBootstrap:
    """Replicate 0 is the point estimate (every item once); replicates 1..B resample each task's items."""

    base: dict[str, np.ndarray]
    n_boot: int = 2000
    seed: int = 0
    weights: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.weights = {}
        for t, b in sorted(self.base.items()):
            n = len(b)
            if n == 0:
                raise ValueError(f"task {t!r} has no items in common")
            counts = np.empty((self.n_boot + 1, n))
            counts[0] = 1.0
            if self.n_boot:
                counts[1:] = rng.multinomial(n, np.full(n, 1.0 / n), size=self.n_boot)
            self.weights[t] = counts / n

    def deltas(self, fam: Family, task: str) -> np.ndarray:
        """(B + 1, 1 + settings): each replicate's change from the base per setting, the base's 0 first."""
        Y = np.asarray(fam.scores[task], dtype=float) - self.base[task][None, :]
        d = self.weights[task] @ np.nan_to_num(Y).T
        return np.concatenate([np.zeros((d.shape[0], 1)), d], axis=1)


def interpolate_at(dB: np.ndarray, dH: np.ndarray, level: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate (rows), ΔH where the curve's ΔB first reaches ``level`` (a number or one per row),
    linear on that segment; NaN where it is not reached. Returns (ΔH, segment index or −1)."""
    dB, dH = np.atleast_2d(dB), np.atleast_2d(dH)
    L = np.broadcast_to(np.asarray(level, dtype=float).reshape(-1, 1) if np.ndim(level) else float(level), (dB.shape[0], 1))
    b0, b1 = dB[:, :-1], dB[:, 1:]
    cross = ((b0 - L) * (b1 - L) <= 0) & (b0 != b1)
    hit = cross.any(axis=1)
    k = np.where(hit, np.argmax(cross, axis=1), 0)
    rows = np.arange(dB.shape[0])
    lo, hi = b0[rows, k], b1[rows, k]
    t = (L[:, 0] - lo) / np.where(hi != lo, hi - lo, 1.0)
    h = dH[rows, k] + t * (dH[rows, k + 1] - dH[rows, k])
    return np.where(hit, h, np.nan), np.where(hit, k, -1)


def _z(alpha: float) -> float:
    return float(sps.norm.ppf(1 - alpha / 2))


def _summary(vals: np.ndarray, alpha: float) -> dict[str, Any]:
    """Estimate (replicate 0), bootstrap SE and the normal interval of one quantity's replicates."""
    est, boot = float(vals[0]), vals[1:]
    ok = np.isfinite(boot)
    se = float(np.std(boot[ok], ddof=1)) if ok.sum() > 1 else float("nan")
    z = _z(alpha)
    return {"estimate": est, "se": se, "ci95": [est - z * se, est + z * se] if math.isfinite(se) else None, "n_boot_used": int(ok.sum())}


def adjust_pvalues(p: Sequence[float], method: str = "holm") -> list[float]:
    """Holm's step-down or Benjamini–Hochberg adjusted p-values (NaN entries stay NaN, not counted)."""
    arr = np.asarray(p, dtype=float)
    out = np.full(arr.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(arr))
    m = len(idx)
    if m == 0:
        return out.tolist()
    order = idx[np.argsort(arr[idx], kind="stable")]
    ps = arr[order]
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ps))
    elif method in ("bh", "fdr_bh"):
        adj = np.minimum.accumulate((m / np.arange(1, m + 1) * ps)[::-1])[::-1]
        adj = np.minimum(adj, 1.0)
    else:
        raise ValueError(f"unknown multiplicity adjustment {method!r}: use 'holm' or 'bh'")
    out[order] = adj
    return out.tolist()


def items_needed(se: float, n: int, diff: float, alpha: float = 0.05, power: float = 0.8, m: int = 1) -> int | None:
    """Items (per task, scaled from the current ``n``) that decide a true difference ``diff`` at ``power``,
    testing at the Bonferroni level α/m, given the SE measured at ``n`` items (SE ∝ 1/√n)."""
    if not (math.isfinite(se) and math.isfinite(diff)) or diff == 0 or n <= 0:
        return None
    zsum = _z(alpha / max(m, 1)) + float(sps.norm.ppf(power))
    return int(math.ceil(n * (zsum * se / abs(diff)) ** 2))


def detectable_difference(se: float, alpha: float = 0.05, power: float = 0.8, m: int = 1) -> float | None:
    """The smallest difference the current items decide with ``power`` at the level α/m."""
    if not math.isfinite(se):
        return None
    return float((_z(alpha / max(m, 1)) + float(sps.norm.ppf(power))) * se)


def sequential_levels(fractions: Sequence[float], alpha: float = 0.05) -> list[float]:
    """The α each look of an adaptive run tests at: α·(t_k² − t_{k−1}²) for the budget shares t_k (the
    last look at t = 1); they sum to at most α (see the module docstring)."""
    ts = [min(max(float(t), 0.0), 1.0) for t in fractions]
    if any(b < a for a, b in zip(ts, ts[1:], strict=False)):
        raise ValueError("look fractions must be non-decreasing")
    out, prev = [], 0.0
    for t in ts:
        out.append(alpha * (t * t - prev * prev))
        prev = t
    return out


def default_levels(reach: dict[str, float], k: int = 3) -> list[float]:
    """k levels spread over (0, the highest ΔB any curve reaches]: 25%, 50%, 75% of it (2 decimals). A pair of
    methods is compared at the levels both reach; a method that does not reach one says "not reached"."""
    tops = [v for v in reach.values() if math.isfinite(v)]
    top = max(tops) if tops else float("nan")
    if not math.isfinite(top) or top <= 0:
        return []
    return [round(top * (j + 1) / (k + 1), 2) for j in range(k)]


def _verdict(a: str, b: str, d: float, p_adj: float, alpha: float, n_items: dict[str, int]) -> str:
    if math.isfinite(p_adj) and p_adj < alpha:
        return f"{a} cheaper" if d > 0 else f"{b} cheaper"
    return "can't tell with " + " and ".join(f"{n} {t} items" for t, n in n_items.items())


def _at_level(fam: Family, dB: np.ndarray, dH: np.ndarray, L: np.ndarray | float, alpha: float) -> dict[str, Any]:
    """One family's ΔH at a level (a number, or one per replicate): status ok / not reached / ill-conditioned.
    A curve whose knob does not start at the base (its declared base is None: a weight curve, the flipped fraction
    f, ORPO's β) is interpolated along its own settings only, never on a segment from the base."""
    first = 1 if fam.spec is not None and fam.spec.base is None else 0
    h, seg = interpolate_at(dB[:, first:], dH[:, first:], L)
    seg = np.where(seg >= 0, seg + first, seg)
    if not np.isfinite(h[0]):
        return {"status": NOT_REACHED, "values": h}
    k0 = int(seg[0])
    rise = dB[1:, k0 + 1] - dB[1:, k0]
    q = np.percentile(rise, [2.5, 97.5]) if len(rise) else np.array([np.nan, np.nan])
    unreached = float(np.mean(~np.isfinite(h[1:]))) if len(h) > 1 else 0.0
    s = _summary(h, alpha)
    if q[0] <= 0 <= q[1]:
        return {"status": ILL_CONDITIONED, "why": "its ΔB is flat on that segment (the rise's 95% CI includes 0)", "values": h, **s}
    if unreached > UNREACHED_SHARE:
        return {"status": ILL_CONDITIONED, "why": f"{100 * unreached:.0f}% of replicates do not reach it", "values": h, **s}
    return {"status": "ok", "values": h, "segment": [fam.settings[k0 - 1] if k0 else "base", fam.settings[k0]], **s}


def _difference(a: str, b: str, level: Any, ha: dict[str, Any], hb: dict[str, Any], alpha: float) -> dict[str, Any]:
    """ΔH_A − ΔH_B replicate by replicate (paired), its interval and two-sided p; or why it can't be formed."""
    row: dict[str, Any] = {"a": a, "b": b, "level": level}
    bad = [(x, r) for x, r in ((a, ha), (b, hb)) if r["status"] != "ok"]
    if bad:
        row["status"] = "; ".join(f"{x}: {r['status']}" + (f" ({r['why']})" if r.get("why") else "") for x, r in bad)
        return row
    s = _summary(ha["values"] - hb["values"], alpha)
    ok_se = math.isfinite(s["se"]) and s["se"] > 0
    p = float(2 * sps.norm.sf(abs(s["estimate"] / s["se"]))) if ok_se else float("nan")
    row.update(status="ok", diff=s["estimate"], se=s["se"], ci95=s["ci95"], p=p, n_boot_used=s["n_boot_used"])
    return row


def finish_verdicts(
    comparisons: list[dict[str, Any]], n_items: dict[str, int], alpha: float = 0.05, adjust: str = "holm", power: float = 0.8
) -> int:
    """Adjusted p-values, verdicts and (for the undecided) the items that would decide them, in place, over
    every formed comparison of one table; returns the number of tests adjusted over."""
    done = [c for c in comparisons if c["status"] == "ok"]
    m = len(done)
    for c, pa in zip(done, adjust_pvalues([c["p"] for c in done], adjust), strict=True):
        mine = {c["task"]: n_items[c["task"]]} if c.get("task") in n_items else n_items  # a one-task contrast names its task
        c["p_adjusted"] = pa
        c["decided"] = bool(math.isfinite(pa) and pa < alpha)
        c["verdict"] = _verdict(c["a"], c["b"], c["diff"], pa, alpha, mine)
        if not c["decided"]:
            c["items_needed"] = {t: items_needed(c["se"], n, c["diff"], alpha, power, m) for t, n in mine.items()}
            c["detectable_difference"] = detectable_difference(c["se"], alpha, power, m)
    for c in comparisons:
        if c["status"] != "ok":
            c["verdict"] = "not comparable: " + c["status"]
            c["decided"] = False
    return m


def decide(
    base: dict[str, np.ndarray],
    families: Sequence[Family],
    alignment: str,
    helpfulness: str,
    *,
    levels: Sequence[float] | None = None,
    alpha: float = 0.05,
    adjust: str = "holm",
    power: float = 0.8,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every family's ΔH at each matched ΔB level (and at each point family's own ΔB), every pair's paired
    difference ΔH_A − ΔH_B with its interval, adjusted p-value, verdict and items to decide it.

    ΔH larger is better (less helpfulness lost), so "A cheaper" means A keeps more helpfulness at the same
    alignment. ``levels``: the matched ΔB levels of the curve comparisons (default: 25/50/75% of the
    highest ΔB any curve reaches; a pair is compared where both reach)."""
    if adjust not in ("holm", "bh", "fdr_bh"):
        raise ValueError(f"unknown multiplicity adjustment {adjust!r}: use 'holm' or 'bh'")
    boot = ChainBootstrap({t: np.asarray(base[t], dtype=float) for t in (alignment, helpfulness)}, n_boot, seed)
    n_items = {alignment: len(base[alignment]), helpfulness: len(base[helpfulness])}
    fams = {f.name: f for f in families}
    curves = {f.name: (boot.deltas(f, alignment), boot.deltas(f, helpfulness)) for f in families}
    settings_out = {
        f.name: [
            {
                "setting": s,
                "value": v,
                "dB": _summary(curves[f.name][0][:, j + 1], alpha),
                "dH": _summary(curves[f.name][1][:, j + 1], alpha),
            }
            for j, (s, v) in enumerate(zip(f.settings, f.values, strict=True))
        ]
        for f in families
    }
    curve_names = [f.name for f in families if f.is_curve]
    reach = {n: float(np.max(curves[n][0][0])) for n in curve_names}
    lv = [float(x) for x in (levels if levels is not None else default_levels(reach))]
    at = {(n, L): _at_level(fams[n], *curves[n], L, alpha) for L in lv for n in curve_names}
    matched = [{"level": L, "family": n, **{k: v for k, v in at[(n, L)].items() if k != "values"}} for L in lv for n in curve_names]

    def formed(a: str, b: str) -> bool:
        fa, fb = fams[a], fams[b]
        return (fa.primary and fb.primary) or "steering" in (fa.group, fb.group)

    comparisons = [
        _difference(a, b, L, at[(a, L)], at[(b, L)], alpha)
        for L in lv
        for i, a in enumerate(curve_names)
        for b in curve_names[i + 1 :]
        if formed(a, b)
    ]
    for pf in families:  # a point family against every curve, at the point's own ΔB (replicate by replicate)
        if pf.is_curve:
            continue
        dB, dH = curves[pf.name]
        own = {"status": "ok", "values": dH[:, 1]}
        for n in curve_names:
            comparisons.append(_difference(pf.name, n, f"ΔB of {pf.name}", own, _at_level(fams[n], *curves[n], dB[:, 1], alpha), alpha))
    m = finish_verdicts(comparisons, n_items, alpha, adjust, power)
    return {
        "alignment": alignment,
        "helpfulness": helpfulness,
        "n_items": n_items,
        "alpha": alpha,
        "adjust": adjust,
        "n_tests": m,
        "power": power,
        "n_boot": n_boot,
        "levels": lv,
        "reach": reach,
        "settings": settings_out,
        "matched": matched,
        "comparisons": comparisons,
        "rule": (
            "ΔH at matched ΔB: linear on the first segment of the knob order (from the base) whose ΔB reaches the level; "
            "no extrapolation; a level on a flat segment (rise CI includes 0) is ill-conditioned"
        ),
    }


def setting_contrasts(
    base: dict[str, np.ndarray],
    families: Sequence[Family],
    tasks: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    *,
    alpha: float = 0.05,
    adjust: str = "holm",
    power: float = 0.8,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Settings against each other on each task, not at matched alignment (β against β, a merge against
    the mixture): the paired difference of their changes from the base (= of their scores, on the same
    items), its interval, the adjusted p-value over the whole table, a verdict and the items to decide it.
    ``pairs`` name settings as ``"family/setting"``."""
    boot = ChainBootstrap({t: np.asarray(base[t], dtype=float) for t in tasks}, n_boot, seed)
    where: dict[str, tuple[Family, int]] = {}
    for f in families:
        for j, s in enumerate(f.settings):
            where[f"{f.name}/{s}"] = (f, j)
    rows: list[dict[str, Any]] = []
    for a, b in pairs:
        for t in tasks:
            if a not in where or b not in where:
                rows.append({"a": a, "b": b, "task": t, "level": t, "status": f"unknown setting {a if a not in where else b!r}"})
                continue
            (fa, ja), (fb, jb) = where[a], where[b]
            da, db = boot.deltas(fa, t)[:, ja + 1], boot.deltas(fb, t)[:, jb + 1]
            row = _difference(a, b, t, {"status": "ok", "values": da}, {"status": "ok", "values": db}, alpha)
            row["task"] = t
            rows.append(row)
    n_items = {t: len(base[t]) for t in tasks}
    m = finish_verdicts(rows, n_items, alpha, adjust, power)
    for r in rows:  # "cheaper" is the matched comparisons' word; here the larger change wins on its task
        if r.get("decided"):
            r["verdict"] = f"{r['a'] if r['diff'] > 0 else r['b']} higher on {r['task']}"
    return {"tasks": list(tasks), "n_items": n_items, "alpha": alpha, "adjust": adjust, "n_tests": m, "comparisons": rows}


def efficient_point(
    base: dict[str, np.ndarray],
    fam: Family,
    alignment: str,
    helpfulness: str,
    w: float,
    validation: dict[str, np.ndarray],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """A family's efficient knob value: the setting (the base, knob value None, included) maximizing
    U = w·ΔH + (1 − w)·ΔB on the ``validation`` items (a boolean mask per task), measured on the other items.

    Returns the chosen setting and value; ΔB, ΔH and U on the held-out items with bootstrap intervals (items
    resampled within the held-out half); and the choice's own uncertainty: the validation items resampled
    ``n_boot`` times, the share of replicates choosing each setting and a percentile interval of the chosen
    knob values (over the replicates that choose a setting with a value)."""
    if not 0 <= w <= 1:
        raise ValueError(f"helpfulness weight {w} must be in [0, 1]")
    tasks = (alignment, helpfulness)
    names = ["base", *fam.settings]
    values: list[float | None] = [None, *fam.values]

    def gains(idx: dict[str, np.ndarray]) -> np.ndarray:
        """U per candidate (base first) on the items ``idx`` of each task."""
        d = {}
        for t in tasks:
            i = idx[t]
            d[t] = np.r_[0.0, np.nanmean(fam.scores[t][:, i] - np.asarray(base[t], dtype=float)[i], axis=1)]
        return w * d[helpfulness] + (1 - w) * d[alignment]

    val = {t: np.flatnonzero(np.asarray(validation[t], dtype=bool)) for t in tasks}
    held = {t: np.flatnonzero(~np.asarray(validation[t], dtype=bool)) for t in tasks}
    for t in tasks:
        if len(val[t]) == 0 or len(held[t]) == 0:
            raise ValueError(f"the validation split of {t!r} leaves an empty half: give more items")
    j = int(np.argmax(gains(val)))
    rng = np.random.default_rng(seed)
    chosen = np.empty(n_boot, dtype=int)
    est: dict[str, list[float]] = {"dB": [], "dH": [], "U": []}
    for b in range(n_boot):
        chosen[b] = int(np.argmax(gains({t: rng.choice(val[t], len(val[t])) for t in tasks})))
        idx = {t: rng.choice(held[t], len(held[t])) for t in tasks}
        dB = float(np.nanmean(fam.scores[alignment][j - 1, idx[alignment]] - base[alignment][idx[alignment]])) if j else 0.0
        dH = float(np.nanmean(fam.scores[helpfulness][j - 1, idx[helpfulness]] - base[helpfulness][idx[helpfulness]])) if j else 0.0
        est["dB"].append(dB)
        est["dH"].append(dH)
        est["U"].append(w * dH + (1 - w) * dB)
    point: dict[str, float] = {}
    for k, t in (("dB", alignment), ("dH", helpfulness)):
        point[k] = float(np.nanmean(fam.scores[t][j - 1, held[t]] - base[t][held[t]])) if j else 0.0
    point["U"] = w * point["dH"] + (1 - w) * point["dB"]
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    vals = np.asarray([values[c] for c in chosen if values[c] is not None], dtype=float)
    return {
        "setting": names[j],
        "value": values[j],
        "helpfulness_weight": w,
        "held_out": {k: {"estimate": point[k], "ci95": [float(x) for x in np.percentile(est[k], q)]} for k in ("dB", "dH", "U")},
        "n_validation": {t: int(len(val[t])) for t in tasks},
        "n_held_out": {t: int(len(held[t])) for t in tasks},
        "choice_share": {names[c]: float(np.mean(chosen == c)) for c in sorted(set(chosen.tolist()))},
        "value_ci95": [float(x) for x in np.percentile(vals, q)] if len(vals) else None,
        "rule": "argmax of U on the validation half (the base a candidate); ΔB, ΔH, U measured on the held-out half",
    }
