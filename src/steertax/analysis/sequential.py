"""The adaptive design of ``steertax compare --until-decided``: looks at growing item counts, α spent over them with
a Lan–DeMets spending function whose boundaries account for the correlation between looks, decisions kept once
made, and a record that a rerun continues.

**The design.** Its cap (the most items per task it will ever score) is fixed when it starts: each task's full
pool, or a stated maximum. The information fraction of a look is t = Σ items used / Σ cap over the compared tasks
(the variance of every comparison falls as 1/n on each task). By t the design has spent α(t), by the spending
function fixed when it starts (:data:`SPENDING`): by default O'Brien–Fleming-like, α(t) = 2 − 2Φ(z_{1−α/2}/√t), almost
nothing early and α at t = 1; or α·t⁶ (Kim–DeMets' power family), which keeps more of α for the last looks
(more power at the cap, later stops; see :data:`DEFAULT_SPENDING` for why α·t⁶ is not the default).

**Boundaries.** For a statistic with independent increments (a mean over items), the standardized statistics of
looks j < k correlate as √(t_j/t_k). With m comparisons the test at a look is on the largest of m statistics;
look k's critical value c_k for that largest (m independent Brownian paths, seeded, deterministic) is set so that
the chance of a first crossing at look k is exactly the α spent since look k − 1, and its nominal level α'_k is the
chance the largest exceeds c_k at that look alone. Because the looks are correlated, Σ α'_k exceeds α while the
chance of any crossing stays α: little is wasted early. m is the number of comparisons the design's first look
forms; independent comparisons are the least correlated case, so the boundaries are conservative for comparisons
that share items. Where a look spends less than the paths can resolve, c_k is the one-look value of its spend.

**Many comparisons.** At look k every open comparison is tested with the max-T (Westfall–Young) adjustment over the
joint bootstrap at level α'_k (:func:`steertax.analysis.decide.decide`); a comparison decided at a look keeps that
verdict and is left out of later looks' tests. The family-wise error of the whole loop is checked by simulation of
:func:`run_design` itself in ``tests/test_sequential.py``.

**The record.** The cap, α, the spending function, the looks (items, t, α spent, α'_k) and the decisions are written
after every look; a rerun with a larger ``budget`` continues the same design from its last look (it never restarts
at α), and a record made for another comparison (another scope) is refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats as sps

__all__ = ["obf_spent", "power_spent", "SPENDING", "DEFAULT_SPENDING", "boundaries", "Design", "run_design", "scope_hash"]

N_PATHS = 400_000  # Brownian paths for the boundaries: MC error of a look's spend ≈ √(α/N) ≈ 3.5e-4 at α = 0.05
PATH_SEED = 20240129


def obf_spent(t: float | np.ndarray, alpha: float) -> Any:
    """The Lan–DeMets O'Brien–Fleming-like spending function: α spent by information fraction t ∈ [0, 1]."""
    t = np.clip(np.asarray(t, dtype=float), 1e-12, 1.0)
    z = sps.norm.ppf(1 - alpha / 2)
    out = 2 - 2 * sps.norm.cdf(z / np.sqrt(t))
    return float(out) if out.ndim == 0 else out


def power_spent(rho: float) -> Callable[[float | np.ndarray, float], Any]:
    """The Kim–DeMets power family: α·t^ρ spent by information fraction t (larger ρ keeps more α for the last
    look)."""

    def spent(t: float | np.ndarray, alpha: float) -> Any:
        out = alpha * np.clip(np.asarray(t, dtype=float), 0.0, 1.0) ** rho
        return float(out) if out.ndim == 0 else out

    return spent


#: the spending functions a design can name (its record keeps the name), with their words for reports
SPENDING: dict[str, tuple[Callable[[float | np.ndarray, float], Any], str]] = {
    "lan-demets-obf": (obf_spent, "Lan–DeMets O'Brien–Fleming-like spending"),
    "power-6": (power_spent(6.0), "Kim–DeMets power spending α·t⁶"),
}
#: a new design's spending. α·t⁶ keeps more of α for the last looks (0.041 nominal at the last of 9, against 0.027) and
#: loses at most 0.05 power to one analysis of the whole pool where O'Brien–Fleming-like spending loses 0.08–0.11, but
#: its family-wise error was 0.074 in simulation (bound 0.069), inherited from the max-T test at the cap's item counts
#: (0.073–0.078 there on its own); O'Brien–Fleming's spends less at the end and holds 0.056 (docs/guide/compare.md)
DEFAULT_SPENDING = "lan-demets-obf"


def boundaries(
    fractions: Sequence[float], alpha: float, m: int = 1, n_paths: int = N_PATHS, spending: str = DEFAULT_SPENDING
) -> list[dict[str, float]]:
    """Per look (information fractions, increasing, ≤ 1): the α spent by then, the critical value c_k of the largest
    of ``m`` standardized statistics (independent Brownian paths) and its nominal level α'_k, the chance that the
    largest exceeds c_k at that look alone — the level a max-T adjusted p-value is compared with. Deterministic
    (seeded paths: a look's boundary depends only on the looks up to it, so a rerun that adds looks keeps the
    earlier ones).

    Why m: the largest of several statistics correlates less from look to look than one statistic does (the
    comparison that is largest changes), so boundaries for one statistic, applied to max-T p-values, let the error
    grow past α (simulated: 0.07 for 18 comparisons over 9 looks). Independent comparisons are the least correlated
    case; comparisons that share items (they do) correlate more, which makes these boundaries conservative."""
    if spending not in SPENDING:
        raise ValueError(f"unknown spending function {spending!r}: use one of {', '.join(SPENDING)}")
    return [dict(b) for b in _boundaries(tuple(float(x) for x in fractions), float(alpha), max(int(m), 1), int(n_paths), spending)]


def _max_level(c: float, m: int) -> float:
    """P(the largest of m independent |N(0, 1)| exceeds c)."""
    return float(-np.expm1(m * np.log1p(-2 * sps.norm.sf(c)))) if math.isfinite(c) else 0.0


def _max_crit(level: float, m: int) -> float:
    """The c at which the largest of m independent |N(0, 1)| exceeds c with probability ``level``."""
    if level <= 0:
        return float("inf")
    one = -np.expm1(np.log1p(-level) / m)  # 1 − (1 − level)^(1/m)
    return float(sps.norm.isf(one / 2))


@functools.lru_cache(maxsize=512)
def _boundaries(fractions: tuple[float, ...], alpha: float, m: int, n_paths: int, spending: str) -> tuple[dict[str, float], ...]:
    t = np.asarray(fractions, dtype=float)
    if len(t) == 0:
        return ()
    if np.any(np.diff(t) <= 0) or t[0] <= 0 or t[-1] > 1 + 1e-12:
        raise ValueError(f"information fractions must increase within (0, 1]: {list(t)}")
    spent = SPENDING[spending][0](t, alpha)
    n = max(min(n_paths, 8_000_000 // m), 10_000)  # paths × statistics held at once
    rng = np.random.default_rng(PATH_SEED)
    W = np.zeros((n, m))
    alive = np.ones(n, dtype=bool)
    prev_t, prev_spent = 0.0, 0.0
    out = []
    for tk, ak in zip(t, np.atleast_1d(spent), strict=True):
        W += rng.normal(0.0, math.sqrt(tk - prev_t), (n, m))
        Z = np.abs(W).max(axis=1) / math.sqrt(tk)
        inc = max(float(ak) - prev_spent, 0.0)
        want = int(round(inc * n))
        za = Z[alive]
        if want >= 50 and want < len(za):  # resolvable: the (want)-th largest statistic among paths not yet stopped
            c = float(np.partition(za, len(za) - want)[len(za) - want])
        else:  # too small a spend to resolve: the one-look value (conservative)
            c = _max_crit(inc, m)
        alive &= Z < c
        out.append({"fraction": float(tk), "alpha_spent": float(ak), "critical_value": c, "nominal_alpha": _max_level(c, m)})
        prev_t, prev_spent = float(tk), float(ak)
    return tuple(out)


def scope_hash(scope: dict[str, Any]) -> str:
    """A short stable hash of what a design is about (folders, tasks, levels, α, adjustment, seed, cap)."""
    return hashlib.sha256(json.dumps(scope, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Design:
    """An adaptive design and what it has done: persisted as JSON after every look."""

    alpha: float
    cap: dict[str, int]
    scope: str
    spending: str = DEFAULT_SPENDING
    m: int = 0  # comparisons formed at the design's first look: the boundaries are for the largest of m statistics
    looks: list[dict[str, Any]] = field(default_factory=list)
    decided: dict[str, dict[str, Any]] = field(default_factory=dict)  # comparison id -> its row at the look that decided it

    def fraction(self, items: dict[str, int]) -> float:
        return min(1.0, sum(min(items[k], self.cap[k]) for k in self.cap) / sum(self.cap.values()))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Design":
        if d["spending"] not in SPENDING:
            raise ValueError(f"unknown spending function {d['spending']!r}")
        return cls(**{k: d[k] for k in ("alpha", "cap", "scope", "spending", "m", "looks", "decided")})


def run_design(
    design: Design,
    items: dict[str, int],
    analyze: Callable[[dict[str, int], float, set[str], float], dict[str, Any]],
    budget: int,
    step: int,
    save: Callable[[Design], None] = lambda d: None,
) -> dict[str, Any]:
    """Look, decide, grow, until every comparison is decided, ``budget`` items per task have been added in this
    run, or the design's cap is reached. ``items``: the items per task scored now (a rerun passes its last look's).
    ``analyze(items, nominal_alpha, decided_ids, future_alpha)`` scores the items (adding cells where needed) and
    returns :func:`~steertax.analysis.decide.decide`'s result with the decided ids left out; ``save`` persists the
    design after every look. Returns the last look's result with every kept decision put back in its place."""
    start = dict(items)
    res: dict[str, Any] | None = None
    stands = bool(design.looks) and design.looks[-1]["items"] == items  # a rerun: its last look stands, grow first
    while True:
        frac = design.fraction(items)
        if not stands and (not design.looks or frac > design.looks[-1]["fraction"]):
            fr = [lk["fraction"] for lk in design.looks] + [frac]
            if not design.m:  # the design's first look: how many comparisons it tests (its p-values do not depend on α)
                design.m = max(int(analyze(dict(items), design.alpha, set(), design.alpha)["n_tests"]), 1)
            bd = boundaries(fr, design.alpha, design.m, spending=design.spending)
            plan = _planned_final(fr, items, design, step)
            res = analyze(dict(items), bd[-1]["nominal_alpha"], set(design.decided), plan)
            new = [c for c in res["comparisons"] if c.get("decided")]
            for c in new:
                design.decided[c["id"]] = {**c, "look": len(design.looks) + 1}
            open_ = sum(1 for c in res["comparisons"] if c["status"] == "ok" and not c.get("decided"))
            look = {"look": len(design.looks) + 1, "items": dict(items), **bd[-1], "decided": [c["id"] for c in new], "open": open_}
            design.looks.append(look)
            save(design)
            if open_ == 0:
                break
        stands = False
        grown = {k: min(items[k] + step, design.cap[k], start[k] + budget) for k in items}
        if grown == items:
            break
        items = grown
    if res is None:  # a rerun with nothing to add: the last look again (same items, same α)
        fr = [x["fraction"] for x in design.looks]
        res = analyze(dict(items), design.looks[-1]["nominal_alpha"], set(design.decided), _planned_final(fr, items, design, step))
    kept = [dict(row) for row in design.decided.values()]
    res = {**res, "comparisons": kept + [c for c in res["comparisons"] if c["id"] not in design.decided]}
    return res


def _planned_final(fr: list[float], items: dict[str, int], design: Design, step: int) -> float:
    """The nominal α of the design's last look if it continues by ``step`` per task to its cap: the level an open
    comparison will finally meet (for the items-to-decide plan). More than 20 future looks are planned as 20 evenly
    spaced ones up to the same end (the last boundary barely moves, and the paths stay cheap)."""
    future: list[float] = []
    cur = dict(items)
    while True:
        cur = {k: min(cur[k] + step, design.cap[k]) for k in cur}
        f = design.fraction(cur)
        if f <= (future[-1] if future else fr[-1]):
            break
        future.append(f)
    if len(future) > 20:
        future = list(np.linspace(fr[-1], future[-1], 21)[1:])
    return boundaries([*fr, *future], design.alpha, design.m, n_paths=100_000, spending=design.spending)[-1]["nominal_alpha"]
