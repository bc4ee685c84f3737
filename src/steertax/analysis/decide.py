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
never reaches L has "not reached". A level is *ill-conditioned* and reported without a number when the
segment's ΔB rise has a 95% bootstrap interval that includes 0 (the curve is flat there, so ΔB does not pin a
knob value), when more than 2.5% of replicates do not reach it, when more than 5% of replicates first cross it on
a segment not adjacent to the estimate's (the curve bends back: the crossing jumps), or when the curve is
non-monotone within the level's uncertainty band (±1.96 bootstrap SE of ΔB). A bending curve's "ok" intervals
covered 85% before these rules; they are flagged now (``tests/test_decide_calibration.py``).

**Intervals (95%, always).** A setting's or a matched ΔH's interval is the normal bootstrap interval (estimate ±
1.96·bootstrap SD). A difference's interval is the symmetric bootstrap-t interval d ± q·SE, with SE the
delta-method SE from each item's influence on the matched difference (through the two segments' ΔH and ΔB, and
through the level itself where it is a point's own ΔB) and q the 95% quantile of |T_b| = |d_b − d|/SE_b over the
replicates, each studentized by its own SE. Whatever level a test or an adaptive look uses, every interval
reported is 95%.

**Tests.** A difference's p-value is the bootstrap-t p: the share of replicates with |T_b| ≥ |d|/SE. At 32–48
bounded items, with skewed paired differences (one method losing a little on every item, another a lot on a
few), the normal reference z = d/SD put the family-wise error of ~80 comparisons at 0.11; the studentized
replicates carry the skew and the small-n tails into the reference.

**Multiplicity.** ``maxt`` (default): Westfall–Young step-down max-T over the joint bootstrap — the comparisons
share items and one resample, so the largest |T_b| over the comparisons still open is the reference, which uses
their correlation and loses less power than Holm as m grows; family-wise error ≤ α (checked by simulation in
the README's regime and over three axes with > 300 comparisons). ``holm`` (Holm over the bootstrap-t p-values)
and ``bh`` (Benjamini–Hochberg, false-discovery rate) remain options.

**What would decide an open comparison.** Per task (the bootstrap weights are per task, every task scaled by one
factor): the items that give 80% power when the true difference is anywhere in the 95% interval (a range, from
its far end to its near end, unbounded when the interval includes 0), and the predictive probability of deciding
it with 2× and 4× the items (the final estimate normal around today's, flat prior), both at the critical value
of the analysis that will decide it (the adaptive design's last boundary, read on the large-sample max-|Z|); and
the smallest difference today's items detect. Not the observed difference plugged into a power formula (post-hoc
power): at the README's figures that gave "about 100 items" where the 95% range was 30–2,900.

**Adaptive mode.** :mod:`steertax.analysis.sequential` (Lan–DeMets spending, boundaries that account for the
looks' correlation, decisions kept, a persisted design).
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
    "pair_verdicts",
    "adjust_pvalues",
    "decide",
    "default_levels",
    "finish_verdicts",
    "comparison_id",
    "bootstrap_null_pvalues",
    "max_t_adjust",
    "predictive_probability",
    "items_to_decide",
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

    def item_deltas(self, fam: Family, task: str) -> np.ndarray:
        """(1 + settings, items): each item's change from the base per setting, the base's zeros first."""
        Y = np.nan_to_num(np.asarray(fam.scores[task], dtype=float) - self.base[task][None, :])
        return np.concatenate([np.zeros((1, Y.shape[1])), Y], axis=0)

    def se_reps(self, lin: dict[str, np.ndarray]) -> np.ndarray:
        """Per replicate, the delta-method SE of a statistic whose per-item linearization (influence) on each
        task is ``lin[task]`` (replicates × items): √Σ_t var_w(lin_t)/n_t under that replicate's item weights
        (replicate 0: every item once). Studentizing each replicate by its own SE makes the bootstrap-t."""
        var = np.zeros(self.weights[next(iter(lin))].shape[0])
        for t, x in lin.items():
            w = self.weights[t]
            x = np.broadcast_to(x, w.shape)
            m = np.sum(w * x, axis=1, keepdims=True)
            var += np.sum(w * (x - m) ** 2, axis=1) / w.shape[1]
        return np.sqrt(var)

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


Z95 = float(sps.norm.ppf(0.975))


def _summary(vals: np.ndarray) -> dict[str, Any]:
    """Estimate (replicate 0), bootstrap SE and the normal 95% interval of one quantity's replicates (every
    interval steertax reports is 95%, whatever level a test uses)."""
    est, boot = float(vals[0]), vals[1:]
    ok = np.isfinite(boot)
    se = float(np.std(boot[ok], ddof=1)) if ok.sum() > 1 else float("nan")
    return {
        "estimate": est,
        "se": se,
        "ci95": [est - Z95 * se, est + Z95 * se] if math.isfinite(se) else None,
        "n_boot_used": int(ok.sum()),
    }


def bootstrap_null_pvalues(est: np.ndarray, reps: np.ndarray, se: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per comparison (columns of ``reps``, one bootstrap replicate per row; NaN where a replicate has none): the
    studentized statistic t = d/SE and its bootstrap null distribution T_b = (d_b − d)/SE_b, and the two-sided
    bootstrap p-value (1 + #{|T_b| ≥ |t|}) / (1 + B). ``se``: (1 + B) × comparisons, each replicate's own SE
    (row 0 the estimate's) — the bootstrap-t, whose tails hold at small n and for skewed, bounded scores;
    without it every replicate is divided by the replicates' SD (a percentile-t with a fixed SE)."""
    reps = np.asarray(reps, dtype=float)
    est = np.asarray(est, dtype=float)
    if se is None:
        sd = np.nanstd(reps, axis=0, ddof=1)
        se0, seb = sd, np.broadcast_to(sd, reps.shape)
    else:
        se0, seb = se[0], se[1:]
    se0 = np.where(np.isfinite(se0) & (se0 > 0), se0, np.nan)
    seb = np.where(np.isfinite(seb) & (seb > 0), seb, np.nan)
    t = est / se0
    T = (reps - est[None, :]) / seb
    T = np.where(np.isfinite(T), np.abs(T), 0.0)  # an unreached replicate counts as no evidence against the null
    ok = np.isfinite(reps).sum(axis=0)
    p = (1 + (T >= np.abs(t)[None, :]).sum(axis=0)) / (1 + ok)
    return t, T, np.where(np.isfinite(t) & (ok > 0), p, np.nan)


def max_t_adjust(t: np.ndarray, T: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, float]:
    """Westfall–Young step-down max-T adjusted p-values from the joint bootstrap: the comparisons sorted by |t|,
    the j-th adjusted p is the share of replicates whose largest |T| over the comparisons not yet rejected
    (j and those below it) reaches |t_j|, made monotone. It controls the family-wise error using the
    correlation between the comparisons (they share items), so it loses less power than Holm as m grows.
    Also returns the single-step critical value: the 1 − α quantile of the largest |T| over all comparisons."""
    t = np.asarray(t, dtype=float)
    out = np.full(t.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(t))
    if len(idx) == 0:
        return out, float("nan")
    order = idx[np.argsort(-np.abs(t[idx]), kind="stable")]
    Ts = T[:, order]
    tail_max = np.maximum.accumulate(Ts[:, ::-1], axis=1)[:, ::-1]  # max over positions j..m per replicate
    B = T.shape[0]
    if B == 0:
        return out, float("nan")
    adj = (1 + (tail_max >= np.abs(t[order])[None, :]).sum(axis=0)) / (1 + B)
    out[order] = np.maximum.accumulate(adj)
    crit = float(np.quantile(tail_max[:, 0], 1 - alpha)) if B else float("nan")
    return out, crit


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


BENT_SHARE = 0.05  # a level more replicates than this cross on a non-adjacent segment is ill-conditioned


def _bends_near(dB0: np.ndarray, k0: int, L: float, delta: float, first: int = 0) -> bool:
    """Whether the point curve is non-monotone where it meets L: within the band L ± delta (the level's
    uncertainty), from the last point below it to the first point above it, ΔB falls somewhere."""
    sgn = 1.0 if dB0[k0 + 1] >= dB0[k0] else -1.0  # a falling curve (negative levels) is read mirrored
    dB0, L = sgn * np.asarray(dB0, dtype=float), sgn * L
    lo = [j for j in range(first, k0 + 1) if dB0[j] < L - delta]
    hi = [j for j in range(k0 + 1, len(dB0)) if dB0[j] > L + delta]
    a = lo[-1] if lo else first
    b = hi[0] if hi else len(dB0) - 1
    return bool(np.any(np.diff(dB0[a : b + 1]) < 0))


def _at_level(fam: Family, dB: np.ndarray, dH: np.ndarray, L: np.ndarray | float, items: Any = None) -> dict[str, Any]:
    """One family's ΔH at a level (a number, or one per replicate): status ok / not reached / ill-conditioned.
    A curve whose knob does not start at the base (its declared base is None: a weight curve, the flipped fraction
    f, ORPO's β) is interpolated along its own settings only, never on a segment from the base.

    Ill-conditioned (reported without a number): the segment's ΔB rise has a 95% interval including 0; more
    than 2.5% of replicates do not reach the level; more than 5% of replicates first cross it on a segment
    not adjacent to the estimate's (the curve bends back, so the crossing jumps); or the curve is non-monotone
    within the level's uncertainty band (±1.96 bootstrap SE of ΔB at the segment's ends)."""
    first = 1 if fam.spec is not None and fam.spec.base is None else 0
    h, seg = interpolate_at(dB[:, first:], dH[:, first:], L)
    seg = np.where(seg >= 0, seg + first, seg)
    if not np.isfinite(h[0]):
        return {"status": NOT_REACHED, "values": h}
    k0 = int(seg[0])
    rise = dB[1:, k0 + 1] - dB[1:, k0]
    q = np.percentile(rise, [2.5, 97.5]) if len(rise) else np.array([np.nan, np.nan])
    unreached = float(np.mean(~np.isfinite(h[1:]))) if len(h) > 1 else 0.0
    s = _summary(h)
    if q[0] <= 0 <= q[1]:
        return {"status": ILL_CONDITIONED, "why": "its ΔB is flat on that segment (the rise's 95% CI includes 0)", "values": h, **s}
    if unreached > UNREACHED_SHARE:
        return {"status": ILL_CONDITIONED, "why": f"{100 * unreached:.0f}% of replicates do not reach it", "values": h, **s}
    reached = seg[1:][seg[1:] >= 0]
    far = float(np.mean(np.abs(reached - k0) > 1)) if len(reached) else 0.0
    if far > BENT_SHARE:
        why = f"the curve bends back: {100 * far:.0f}% of replicates first cross it on a distant segment"
        return {"status": ILL_CONDITIONED, "why": why, "values": h, **s}
    if len(dB) > 1:
        Lv = float(np.ravel(L)[0]) if np.ndim(L) else float(L)  # replicate 0's level (a point's own ΔB)
        sd = np.nanstd(dB[1:], axis=0, ddof=1)
        delta = 1.96 * float(max(sd[k0], sd[k0 + 1]))
        if _bends_near(dB[0], k0, Lv, delta, first):
            return {"status": ILL_CONDITIONED, "why": "the curve is non-monotone within the level's uncertainty", "values": h, **s}
    out = {"status": "ok", "values": h, "segment": [fam.settings[k0 - 1] if k0 else "base", fam.settings[k0]], **s}
    if items is not None:
        out.update(_linearize(items, dB, dH, seg, L))
    return out


def _linearize(items: dict[str, np.ndarray], dB: np.ndarray, dH: np.ndarray, seg: np.ndarray, L: np.ndarray | float) -> dict[str, Any]:
    """Per replicate, the per-item influence of the matched ΔH on each task (``lin``: task → replicates × items)
    and its derivative in the level (``dL``). On segment k with share s = (L − ΔB_k)/(ΔB_{k+1} − ΔB_k) and slope
    g = (ΔH_{k+1} − ΔH_k)/(ΔB_{k+1} − ΔB_k), h = (1 − s)·ΔH_k + s·ΔH_{k+1}: a helpfulness item enters as
    (1 − s)·y_k + s·y_{k+1}, an alignment item as −g·((1 − s)·x_k + s·x_{k+1}), and ∂h/∂L = g. A replicate that
    does not reach the level has zero influence (it counts as no evidence in the test)."""
    (ta, Da), (th, Dh) = list(items.items())
    rows = np.arange(dB.shape[0])
    ok = seg >= 0
    k = np.where(ok, seg, 0)
    Lr = np.broadcast_to(np.asarray(L, dtype=float).reshape(-1) if np.ndim(L) else float(L), (dB.shape[0],))
    lo, hi = dB[rows, k], dB[rows, k + 1]
    run = np.where(ok & (hi != lo), hi - lo, np.nan)
    sh = np.where(ok, (Lr - lo) / run, 0.0)
    g = np.where(ok, (dH[rows, k + 1] - dH[rows, k]) / run, 0.0)
    sh, g = np.nan_to_num(sh), np.nan_to_num(g)
    lin_h = (1 - sh)[:, None] * Dh[k] + sh[:, None] * Dh[k + 1]
    lin_a = -g[:, None] * ((1 - sh)[:, None] * Da[k] + sh[:, None] * Da[k + 1])
    okc = ok[:, None]
    return {"lin": {ta: np.where(okc, lin_a, 0.0), th: np.where(okc, lin_h, 0.0)}, "dL": g}


def _difference(a: str, b: str, level: Any, ha: dict[str, Any], hb: dict[str, Any], boot: ChainBootstrap | None = None) -> dict[str, Any]:
    """ΔH_A − ΔH_B replicate by replicate (paired); or why it can't be formed. The replicates (``_reps``) and,
    where both sides carry their per-item linearization (``lin``: alignment, helpfulness), each replicate's own
    delta-method SE (``_se``) are kept for the test and the interval, which :func:`finish_verdicts` makes over
    the whole table (bootstrap-t)."""
    row: dict[str, Any] = {"a": a, "b": b, "level": level}
    bad = [(x, r) for x, r in ((a, ha), (b, hb)) if r["status"] != "ok"]
    if bad:
        row["status"] = "; ".join(f"{x}: {r['status']}" + (f" ({r['why']})" if r.get("why") else "") for x, r in bad)
        return row
    reps = ha["values"] - hb["values"]
    s = _summary(reps)
    row.update(status="ok", diff=s["estimate"], se=s["se"], ci95=s["ci95"], n_boot_used=s["n_boot_used"], _reps=reps[1:])
    if boot is not None and "lin" in ha and "lin" in hb:
        lin = {t: ha["lin"][t] - hb["lin"][t] for t in ha["lin"]}
        se = boot.se_reps(lin)
        row["_se"] = se
        row["se"] = float(se[0])
    return row


def predictive_probability(diff: float, se: float, n: int, n_new: int, crit: float) -> float | None:
    """The probability that an analysis at ``n_new`` items (every task scaled by n_new/n) decides the comparison
    (|d|/SE beyond ``crit``), predicted from the current estimate ``diff`` with ``se`` at ``n`` items (flat prior:
    the final estimate is normal around ``diff`` with variance se²·(1 − n/n_new); its SE se·√(n/n_new))."""
    if not (math.isfinite(diff) and math.isfinite(se) and se > 0 and math.isfinite(crit)) or n_new <= n or n <= 0:
        return None
    tau = se * math.sqrt(1 - n / n_new)
    edge = crit * se * math.sqrt(n / n_new)
    return float(sps.norm.sf((edge - diff) / tau) + sps.norm.cdf((-edge - diff) / tau))


def items_to_decide(
    diff: float,
    se: float,
    ci95: Sequence[float] | None,
    n_items: dict[str, int],
    crit: float,
    power: float = 0.8,
    crit_future: float | None = None,
) -> dict[str, Any]:
    """What an open comparison would need, per task (every task's items scaled by one factor, as the bootstrap
    resamples each task's items): the **range** of items that decide it with ``power`` when the true difference
    is anywhere in its 95% interval (unbounded when the interval includes 0), and the **predictive probability**
    of deciding it with 2× and 4× the items (flat prior), both at ``crit_future``, the critical value of the
    analysis that will decide it (default ``crit``); and the smallest difference the current items detect with
    ``power`` at this table's critical value ``crit``."""
    zp = float(sps.norm.ppf(power))
    out: dict[str, Any] = {"critical_value": crit, "power": power}
    if not (math.isfinite(se) and se > 0 and math.isfinite(crit)):
        return out
    out["detectable_difference"] = float((crit + zp) * se)
    crit = crit if crit_future is None or not math.isfinite(crit_future) else float(crit_future)
    out["future_critical_value"] = crit
    if ci95 is not None:
        lo, hi = sorted(abs(float(x)) for x in ci95)
        near = 0.0 if ci95[0] <= 0 <= ci95[1] else lo  # the interval's end nearest 0
        far = hi

        def need(effect: float) -> dict[str, int | None]:
            if effect <= 0:
                return {t: None for t in n_items}
            f = ((crit + zp) * se / effect) ** 2
            return {t: int(math.ceil(n * max(f, 1.0))) for t, n in n_items.items()}

        out["items_range"] = {"at_far_end": need(far), "at_near_end": need(near)}  # None: unbounded
    n0 = max(n_items.values()) if n_items else 0
    out["predictive_probability"] = {f"x{k}": predictive_probability(diff, se, n0, k * n0, crit) for k in (2, 4)}
    return out


def finish_verdicts(
    comparisons: list[dict[str, Any]],
    n_items: dict[str, int],
    alpha: float = 0.05,
    adjust: str = "maxt",
    power: float = 0.8,
    future_alpha: float | None = None,
) -> int:
    """Adjusted p-values, verdicts and (for the undecided) what would decide them, in place, over every formed
    comparison of one table; returns the number of tests adjusted over.

    Each comparison's p-value is its bootstrap-null p (:func:`bootstrap_null_pvalues`); ``adjust`` is ``maxt``
    (Westfall–Young step-down over the joint bootstrap: family-wise error ≤ α), ``holm`` (Holm over the same
    p-values) or ``bh`` (Benjamini–Hochberg: false-discovery rate). ``future_alpha``: the level a later analysis
    of the open comparisons will meet (an adaptive design's last boundary): the items-to-decide plan uses this
    table's large-sample max-T critical value at that level (default ``alpha``)."""
    if adjust not in ("maxt", "holm", "bh", "fdr_bh"):
        raise ValueError(f"unknown multiplicity adjustment {adjust!r}: use 'maxt', 'holm' or 'bh'")
    done = [c for c in comparisons if c["status"] == "ok"]
    m = len(done)
    if done:
        B = min(len(c["_reps"]) for c in done)
        est = np.array([c["diff"] for c in done])
        reps = np.stack([np.asarray(c["_reps"][:B], dtype=float) for c in done], axis=1)
        studentized = all("_se" in c for c in done)
        se = np.stack([np.asarray(c["_se"][: B + 1], dtype=float) for c in done], axis=1) if studentized else None
        t, T, p = bootstrap_null_pvalues(est, reps, se)
        q95 = np.quantile(T, 0.95, axis=0) if B else np.full(len(done), np.nan)  # bootstrap-t: the interval's half-width in SEs
        if adjust == "maxt":
            p_adj, crit = max_t_adjust(t, T, alpha)
        else:
            p_adj = np.asarray(adjust_pvalues(p.tolist(), adjust))
            crit = float(np.quantile(T.max(axis=1), 1 - alpha)) if B else float("nan")
        # the later analysis has more items, where the bootstrap-t's small-sample tails have thinned: its critical value
        # is read from the replicates standardized by their SD (the large-sample max-|Z| with this table's correlations)
        a_next = alpha if future_alpha is None else float(future_alpha)
        with np.errstate(invalid="ignore", divide="ignore"):
            Z = np.abs(reps - est[None, :]) / np.nanstd(reps, axis=0, ddof=1)[None, :] if B > 1 else np.zeros((0, len(done)))
        Z = np.where(np.isfinite(Z), Z, 0.0)
        crit_next = float(np.quantile(Z.max(axis=1), 1 - a_next)) if B > 1 else float("nan")
    for k, c in enumerate(done):
        if c.get("task") in n_items:  # a one-task contrast names its task
            mine = {c["task"]: n_items[c["task"]]}
        else:  # a matched comparison its alignment task and helpfulness axis
            mine = {t: n_items[t] for t in c.get("tasks", n_items) if t in n_items}
        c["t"] = float(t[k]) if math.isfinite(t[k]) else None
        if se is not None and math.isfinite(q95[k]) and math.isfinite(c["se"]):
            c["ci95"] = [c["diff"] - q95[k] * c["se"], c["diff"] + q95[k] * c["se"]]  # symmetric bootstrap-t interval
        c["p"] = float(p[k]) if math.isfinite(p[k]) else float("nan")
        pa = float(p_adj[k])
        c["p_adjusted"] = pa
        c["decided"] = bool(math.isfinite(pa) and pa < alpha)
        c["verdict"] = _verdict(c["a"], c["b"], c["diff"], pa, alpha, mine)
        if not c["decided"]:
            plan = items_to_decide(c["diff"], c["se"], c.get("ci95"), mine, crit, power, crit_next)
            c["to_decide"] = plan
            c["detectable_difference"] = plan.get("detectable_difference")
    for c in comparisons:
        c.pop("_reps", None)
        c.pop("_se", None)
        if c["status"] != "ok":
            c["verdict"] = "not comparable: " + c["status"]
            c["decided"] = False
    return m


def pair_verdicts(comparisons: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary verdict per pair of methods over every axis and level it was decided on (the table's own
    multiplicity control: a decision here is a decision there). Per pair: the axes on which A was decided cheaper,
    those on which B was, and the verdict — "A cheaper on X; B on no axis", "trade-off: A cheaper on X, B cheaper
    on Y", or "can't tell" (no axis decided). "On no axis" means no comparison decided it, not that it was shown
    no worse: an open axis is open."""
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for c in comparisons:
        k = (c["a"], c["b"])
        p = pairs.setdefault(k, {"a": c["a"], "b": c["b"], "a_cheaper": {}, "b_cheaper": {}, "formed": 0, "open": []})
        if c.get("status") != "ok":
            continue
        p["formed"] += 1
        ax = c.get("axis") or (c.get("tasks") or ["", ""])[-1]
        lv = c["level"] if isinstance(c["level"], str) else f"ΔB {c['level']:g}"
        if c.get("decided"):
            p["a_cheaper" if c["diff"] > 0 else "b_cheaper"].setdefault(ax, []).append(lv)
        elif ax not in p["open"]:
            p["open"].append(ax)
    out = []
    for p in pairs.values():
        a, b, xa, xb = p["a"], p["b"], p["a_cheaper"], p["b_cheaper"]
        if not p["formed"]:
            v = "not comparable (no level both reach)"
        elif xa and xb:
            v = f"trade-off: {a} cheaper on {', '.join(xa)}; {b} cheaper on {', '.join(xb)}"
        elif xa or xb:
            win, lose, axes = (a, b, xa) if xa else (b, a, xb)
            v = f"{win} cheaper on {', '.join(axes)}; {lose} cheaper on no axis"
        else:
            v = "can't tell"
        out.append({**p, "verdict": v})
    return out


def _formed(fa: Family, fb: Family) -> bool:
    """The family rule: primary curves meet each other; a secondary one (an α curve of one β) meets steering only."""
    return (fa.primary and fb.primary) or "steering" in (fa.group, fb.group)


def _axis_comparisons(
    fams: dict[str, Family],
    curve_names: list[str],
    lv: list[float],
    alignment: str,
    ax: str,
    at: dict[tuple[str, float, str], dict[str, Any]],
    dBs: dict[str, np.ndarray],
    dHs: dict[tuple[str, str], np.ndarray],
    items: dict[tuple[str, str], dict[str, np.ndarray]],
    boot: ChainBootstrap,
) -> list[dict[str, Any]]:
    """One helpfulness axis' comparisons: curve pairs at each level, then each point against the curves at its ΔB."""
    rows = [
        _difference(a, b, L, at[(a, L, ax)], at[(b, L, ax)], boot)
        for L in lv
        for i, a in enumerate(curve_names)
        for b in curve_names[i + 1 :]
        if _formed(fams[a], fams[b])
    ]
    for pf in fams.values():  # a point family against every curve, at the point's own ΔB (replicate by replicate)
        if pf.is_curve:
            continue
        Da, Dh = items[(pf.name, ax)][alignment], items[(pf.name, ax)][ax]
        lin = {alignment: np.zeros_like(Da[1])[None, :], ax: Dh[1][None, :]}
        own = {"status": "ok", "values": dHs[(pf.name, ax)][:, 1], "lin": lin}
        for n in curve_names:
            if not _formed(pf, fams[n]):  # the family rule holds for points too: a secondary curve meets steering only
                continue
            other = _at_level(fams[n], dBs[n], dHs[(n, ax)], dBs[pf.name][:, 1], items[(n, ax)])
            if "lin" in other:  # the level is the point's own ΔB: its items move the level too
                other["lin"] = {**other["lin"], alignment: other["lin"][alignment] + other["dL"][:, None] * Da[1][None, :]}
            rows.append(_difference(pf.name, n, f"ΔB of {pf.name}", own, other, boot))
    return rows


def decide(
    base: dict[str, np.ndarray],
    families: Sequence[Family],
    alignment: str,
    helpfulness: str | Sequence[str],
    *,
    levels: Sequence[float] | None = None,
    alpha: float = 0.05,
    adjust: str = "maxt",
    power: float = 0.8,
    n_boot: int = 2000,
    seed: int = 0,
    skip: Sequence[str] = (),
    future_alpha: float | None = None,
) -> dict[str, Any]:
    """Every family's ΔH at each matched ΔB level (and at each point family's own ΔB), every pair's paired
    difference ΔH_A − ΔH_B with its interval, adjusted p-value, verdict and items to decide it.

    ΔH larger is better (less helpfulness lost), so "A cheaper" means A keeps more helpfulness at the same
    alignment. ``helpfulness``: one task, or several (every helpfulness axis at once: each comparison is made on
    each axis, its row names its ``axis``, and the multiplicity control runs over axes × pairs × levels, all on
    one bootstrap). ``levels``: the matched ΔB levels of the curve comparisons (default: 25/50/75% of the
    highest ΔB any curve reaches; a pair is compared where both reach). ``alpha``: the level the tests use (an
    adaptive look's); every interval is 95%. ``skip``: ids (:func:`comparison_id`) of comparisons decided at an
    earlier look, left out of this table's tests. ``future_alpha``: see :func:`finish_verdicts`."""
    if adjust not in ("maxt", "holm", "bh", "fdr_bh"):
        raise ValueError(f"unknown multiplicity adjustment {adjust!r}: use 'maxt', 'holm' or 'bh'")
    axes = [helpfulness] if isinstance(helpfulness, str) else list(helpfulness)
    if not axes or alignment in axes or len(set(axes)) < len(axes):
        raise ValueError(f"helpfulness axes {axes!r}: give one or more distinct tasks other than the alignment task")
    multi = not isinstance(helpfulness, str)
    boot = ChainBootstrap({t: np.asarray(base[t], dtype=float) for t in (alignment, *axes)}, n_boot, seed)
    n_items = {t: len(base[t]) for t in (alignment, *axes)}
    fams = {f.name: f for f in families}
    dBs = {f.name: boot.deltas(f, alignment) for f in families}
    dHs = {(f.name, ax): boot.deltas(f, ax) for f in families for ax in axes}

    def setting_row(f: Family, j: int, s: str, v: float | None) -> dict[str, Any]:
        row = {"setting": s, "value": v, "dB": _summary(dBs[f.name][:, j + 1]), "dH": _summary(dHs[(f.name, axes[0])][:, j + 1])}
        if multi:
            row["dH_axes"] = {ax: _summary(dHs[(f.name, ax)][:, j + 1]) for ax in axes}
        return row

    settings_out = {f.name: [setting_row(f, j, s, v) for j, (s, v) in enumerate(zip(f.settings, f.values, strict=True))] for f in families}
    curve_names = [f.name for f in families if f.is_curve]
    reach = {n: float(np.max(dBs[n][0])) for n in curve_names}
    lv = [float(x) for x in (levels if levels is not None else default_levels(reach))]
    items = {(f.name, ax): {alignment: boot.item_deltas(f, alignment), ax: boot.item_deltas(f, ax)} for f in families for ax in axes}
    at = {(n, L, ax): _at_level(fams[n], dBs[n], dHs[(n, ax)], L, items[(n, ax)]) for L in lv for ax in axes for n in curve_names}
    keep_out = ("values", "lin", "dL")
    matched = [
        {"level": L, "family": n, **({"axis": ax} if multi else {}), **{k: v for k, v in at[(n, L, ax)].items() if k not in keep_out}}
        for ax in axes
        for L in lv
        for n in curve_names
    ]

    comparisons: list[dict[str, Any]] = []
    for ax in axes:
        mine = _axis_comparisons(fams, curve_names, lv, alignment, ax, at, dBs, dHs, items, boot)
        for c in mine:
            c["tasks"] = [alignment, ax]
            if multi:
                c["axis"] = ax
        comparisons += mine
    for c in comparisons:
        c["id"] = comparison_id(c)
    if skip:  # decided at an earlier look of an adaptive design: kept by the caller, not tested again
        comparisons = [c for c in comparisons if c["id"] not in skip]
    m = finish_verdicts(comparisons, n_items, alpha, adjust, power, future_alpha)
    return {
        "alignment": alignment,
        "helpfulness": helpfulness if isinstance(helpfulness, str) else axes,
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


def comparison_id(c: dict[str, Any]) -> str:
    """A comparison's stable id: its two methods, its level (a matched ΔB, a point's own ΔB or a task) and, when
    several helpfulness axes are decided at once, its axis."""
    return f"{c['a']} | {c['b']} | {c['level']}" + (f" | {c['axis']}" if c.get("axis") else "")


def setting_contrasts(
    base: dict[str, np.ndarray],
    families: Sequence[Family],
    tasks: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    *,
    alpha: float = 0.05,
    adjust: str = "maxt",
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
            # a one-task contrast: its linearization names only task t, so its SE comes from t's weights alone
            la, lb = {t: boot.item_deltas(fa, t)[ja + 1][None, :]}, {t: boot.item_deltas(fb, t)[jb + 1][None, :]}
            row = _difference(a, b, t, {"status": "ok", "values": da, "lin": la}, {"status": "ok", "values": db, "lin": lb}, boot)
            row["task"] = t
            rows.append(row)
    n_items = {t: len(base[t]) for t in tasks}
    m = finish_verdicts(rows, n_items, alpha, adjust, power)
    for r in rows:  # "cheaper" is the matched comparisons' word; here the larger change wins on its task
        if r.get("decided"):
            r["verdict"] = f"{r['a'] if r['diff'] > 0 else r['b']} higher on {r['task']}"
    return {"tasks": list(tasks), "n_items": n_items, "alpha": alpha, "adjust": adjust, "n_tests": m, "comparisons": rows}


def _tax(base: np.ndarray, scores: np.ndarray, idx: np.ndarray) -> float:
    """The capability tax of a setting on items ``idx``: (base − aligned) / base × 100 (the seed's formula)."""
    b = float(np.nanmean(base[idx]))
    return float("nan") if b == 0 else 100.0 * (b - float(np.nanmean(scores[idx]))) / b


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
    capability: Sequence[str] = (),
    max_tax: float | None = None,
) -> dict[str, Any]:
    """A family's efficient knob value: the setting (the base, knob value None, included) maximizing
    U = w·ΔH + (1 − w)·ΔB on the ``validation`` items (a boolean mask per task), measured on the other items. With
    rates on both axes (the helpful rate on safe prompts, the harmless rate on harmful requests) this is the seed's
    U = w·helpful + (1 − w)·harmless less the base's U, so the same argmax.

    ``capability``: tasks on which each point's capability tax (base − aligned)/base × 100 is reported (held out, with
    its interval); ``max_tax``: a setting whose tax on any of them exceeds it on the validation items is not a
    candidate (the base, tax 0, always is).

    Returns the chosen setting and value; ΔB, ΔH, U and the taxes on the held-out items with bootstrap intervals
    (items resampled within the held-out half); and the choice's own uncertainty: the validation items resampled
    ``n_boot`` times, the share of replicates choosing each setting (the base included) and the choice range:
    the 2.5–97.5 percentiles of the chosen knob values over the replicates that choose a setting with a value
    (where the choice lands, not a confidence interval)."""
    if not 0 <= w <= 1:
        raise ValueError(f"helpfulness weight {w} must be in [0, 1]")
    if max_tax is not None and not (math.isfinite(max_tax) and max_tax >= 0):
        raise ValueError(f"max_tax {max_tax} must be a percentage of 0 or more")
    caps = [c for c in capability if c not in (alignment, helpfulness)]
    tasks = (alignment, helpfulness, *caps)
    names = ["base", *fam.settings]
    values: list[float | None] = [None, *fam.values]
    bases = {t: np.asarray(base[t], dtype=float) for t in tasks}

    def gains(idx: dict[str, np.ndarray]) -> np.ndarray:
        """U per candidate (base first) on the items ``idx`` of each task; −∞ where the tax is over ``max_tax``."""
        d = {}
        for t in (alignment, helpfulness):
            i = idx[t]
            d[t] = np.r_[0.0, np.nanmean(fam.scores[t][:, i] - bases[t][i], axis=1)]
        u = w * d[helpfulness] + (1 - w) * d[alignment]
        if max_tax is not None:
            for t in caps:
                tax = np.r_[0.0, [_tax(bases[t], fam.scores[t][j], idx[t]) for j in range(len(fam.settings))]]
                u = np.where(np.nan_to_num(tax, nan=np.inf) > max_tax, -np.inf, u)
        return u

    val = {t: np.flatnonzero(np.asarray(validation[t], dtype=bool)) for t in tasks}
    held = {t: np.flatnonzero(~np.asarray(validation[t], dtype=bool)) for t in tasks}
    for t in tasks:
        if len(val[t]) == 0 or len(held[t]) == 0:
            raise ValueError(f"the validation split of {t!r} leaves an empty half: give more items")
    j = int(np.argmax(gains(val)))
    rng = np.random.default_rng(seed)
    chosen = np.empty(n_boot, dtype=int)
    est: dict[str, list[float]] = {"dB": [], "dH": [], "U": [], **{f"tax:{t}": [] for t in caps}}
    for b in range(n_boot):
        chosen[b] = int(np.argmax(gains({t: rng.choice(val[t], len(val[t])) for t in tasks})))
        idx = {t: rng.choice(held[t], len(held[t])) for t in tasks}
        dB = float(np.nanmean(fam.scores[alignment][j - 1, idx[alignment]] - base[alignment][idx[alignment]])) if j else 0.0
        dH = float(np.nanmean(fam.scores[helpfulness][j - 1, idx[helpfulness]] - base[helpfulness][idx[helpfulness]])) if j else 0.0
        est["dB"].append(dB)
        est["dH"].append(dH)
        est["U"].append(w * dH + (1 - w) * dB)
        for t in caps:
            est[f"tax:{t}"].append(_tax(bases[t], fam.scores[t][j - 1], idx[t]) if j else 0.0)
    point: dict[str, float] = {}
    for k, t in (("dB", alignment), ("dH", helpfulness)):
        point[k] = float(np.nanmean(fam.scores[t][j - 1, held[t]] - base[t][held[t]])) if j else 0.0
    point["U"] = w * point["dH"] + (1 - w) * point["dB"]
    for t in caps:
        point[f"tax:{t}"] = _tax(bases[t], fam.scores[t][j - 1], held[t]) if j else 0.0
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    vals = np.asarray([values[c] for c in chosen if values[c] is not None], dtype=float)

    def interval(k: str) -> dict[str, Any]:
        x = np.asarray(est[k], dtype=float)
        x = x[np.isfinite(x)]
        return {"estimate": point[k], "ci95": [float(v) for v in np.percentile(x, q)] if len(x) else None}

    return {
        "setting": names[j],
        "value": values[j],
        "helpfulness_weight": w,
        "max_tax": max_tax,
        "held_out": {k: interval(k) for k in ("dB", "dH", "U")},
        "tax": {t: interval(f"tax:{t}") for t in caps},
        "n_validation": {t: int(len(val[t])) for t in tasks},
        "n_held_out": {t: int(len(held[t])) for t in tasks},
        "choice_share": {names[c]: float(np.mean(chosen == c)) for c in sorted(set(chosen.tolist()))},
        # where the choice lands when the validation items are resampled: a choice range, not a confidence interval
        # for a "true" knob value (an argmax has none); replicates choosing the base are counted in choice_share
        "choice_range": [float(x) for x in np.percentile(vals, q)] if len(vals) else None,
        "rule": "argmax of U on the validation half (the base a candidate"
        + (f"; settings with a capability tax above {max_tax:g}% there are not" if max_tax is not None else "")
        + "); ΔB, ΔH, U and taxes measured on the held-out half",
    }
