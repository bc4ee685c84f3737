"""The decisions' error rates, power, interval coverage and items-to-decide figures, checked by simulating the
regimes the README reports (32/48 bounded items, ~80 comparisons) and the next issue's (binary outcomes, three
helpfulness axes, > 300 comparisons) through the real :func:`steertax.analysis.decide.decide`. Seeded: the same
draws every run. The data sets are independent, so the loops run on two processes (the verdicts do not depend on it)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import steertax.analysis.decide as D
from decide_sims import AXES, pmap, readme_regime
from steertax.analysis.decide import Family, decide

ALPHA = 0.05
SHIFT = 0.035  # the real difference of the power check (docs/decisions.md has the curve)


def _mc_bound(p: float, n: int) -> float:
    return p + 2 * math.sqrt(p * (1 - p) / n)


# ----------------------------------------------------------------------------------------------- family-wise error


def _readme_null(seed: int) -> tuple[bool, int]:
    base, fams = readme_regime(np.random.default_rng(seed))
    out = decide(base, fams, "refusal", "arc")
    return any(c["decided"] for c in out["comparisons"]), len(out["comparisons"])


def test_family_wise_error_holds_in_the_readme_regime():
    """8 families with identical true curves (4 diffuse, 4 sparse cost shapes), 32 refusal and 48 ARC items, the
    default levels: 84 comparisons. Any decision is a false one. Before the bootstrap-t and max-T: 0.11."""
    sims = 1000
    res = pmap(_readme_null, range(sims))
    assert min(n for _, n in res) >= 80
    fwer = sum(w for w, _ in res) / sims
    assert fwer <= _mc_bound(ALPHA, sims), fwer


def _binary_null(seed: int) -> tuple[bool, int, int]:
    from decide_sims import binary_regime

    base, fams = binary_regime(np.random.default_rng(seed))
    out = decide(base, fams, "harmless", list(AXES), levels=[0.2, 0.35, 0.5], n_boot=1000)
    return any(c["decided"] for c in out["comparisons"]), len(out["comparisons"]), out["n_tests"]


@pytest.mark.slow
def test_family_wise_error_holds_over_three_axes_with_binary_outcomes():
    """The next issue's regime: 64 unsafe prompts (harmless rate), 128 safe prompts, 48 capability and 48 drift
    items, all binary, 9 families with identical truths: 324 comparisons (36 pairs × 3 levels × 3 axes), one max-T
    (1000 bootstrap replicates, `--n-boot 1000`, to keep the test within its budget)."""
    sims = 1000
    res = pmap(_binary_null, range(10_000, 10_000 + sims))
    assert min(n for _, n, _ in res) >= 300
    fwer = sum(w for w, _, _ in res) / sims
    assert fwer <= _mc_bound(ALPHA, sims), fwer


# ----------------------------------------------------------------------------------------------- power


def _old_holm_normal(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """The procedure this replaced: z = d / (bootstrap SD) against the normal, Holm over the table."""
    from scipy import stats as sps

    ok = [c for c in rows if c["status"] == "ok"]
    p = [float(2 * sps.norm.sf(abs(c["diff"]) / np.nanstd(c["_reps"], ddof=1))) for c in ok]
    adj = D.adjust_pvalues(p, "holm")
    return {D.comparison_id(c): a < ALPHA for c, a in zip(ok, adj, strict=True)}


def _power_one(seed: int) -> tuple[bool, bool]:
    """One real difference (family m0 loses SHIFT more at every setting), 7 families identical: does each procedure
    decide m0 against m2 (same cost shape) at some level, in the right direction?"""
    seen: dict[str, Any] = {}
    real = D.finish_verdicts

    def spy(comps: list[dict[str, Any]], *a: Any, **k: Any) -> int:
        seen["old"] = _old_holm_normal(comps)
        return real(comps, *a, **k)

    D.finish_verdicts = spy  # type: ignore[assignment]  (worker process: restored below)
    try:
        base, fams = readme_regime(np.random.default_rng(seed), shift=SHIFT)
        out = decide(base, fams, "refusal", "arc")
    finally:
        D.finish_verdicts = real  # type: ignore[assignment]
    mine = [c for c in out["comparisons"] if c["a"] == "m0" and c["b"] == "m2" and c["status"] == "ok"]
    new = any(c["decided"] and c["verdict"] == "m2 cheaper" for c in mine)
    old = any(seen["old"].get(c["id"], False) and c["diff"] < 0 for c in mine)
    return new, old


def test_power_to_decide_a_real_difference_is_kept():
    """At a difference of 0.035 in ΔH at every setting, the calibrated procedure decides it at least as
    often as the old anti-conservative one, less 0.05 (a procedure that never decides fails this)."""
    sims = 300
    res = pmap(_power_one, range(20_000, 20_000 + sims))
    new = sum(n for n, _ in res) / sims
    old = sum(o for _, o in res) / sims
    assert new >= old - 0.05 and new >= 0.5, (new, old)


# ----------------------------------------------------------------------------------------------- coverage


def _curve(name: str, gains: list[float], costs: list[float], base: dict[str, np.ndarray], rng: np.random.Generator) -> Family:
    nA, nH = len(base["refusal"]), len(base["arc"])
    A = np.stack([np.clip(base["refusal"] + g + rng.normal(0, 0.3, nA), -1, 1) for g in gains])
    H = np.stack([np.clip(base["arc"] - c + rng.normal(0, 0.05, nH), 0, 1) for c in costs])
    return Family(name, "r", [f"{name}{j}" for j in range(len(gains))], list(range(1, len(gains) + 1)), {"refusal": A, "arc": H})


MONO = ([0.4, 0.8, 1.2], [0.01, 0.04, 0.09])
OTHER = ([0.6, 1.2], [0.02, 0.05])
BENT = ([0.9, 0.75, 1.6], [0.03, 0.06, 0.12])  # ΔB 0 → 0.90 → 0.75 → 1.60: it bends back


def _truth(curve: tuple[list[float], list[float]], L: float) -> float:
    """The population's ΔH where its ΔB first reaches L: each setting's expected change of the clipped scores over
    the item population (a large seeded sample), linear between settings, as the interpolation rule reads it."""
    rng = np.random.default_rng(0)
    b, h = rng.uniform(-0.75, -0.25, 2_000_000), rng.uniform(0.5, 0.9, 2_000_000)
    e = rng.normal(0, 1, 2_000_000)
    dB = [0.0] + [float(np.mean(np.clip(b + g + 0.3 * e, -1, 1) - b)) for g in curve[0]]
    dH = [0.0] + [float(np.mean(np.clip(h - c + 0.05 * e, 0, 1) - h)) for c in curve[1]]
    k = next(i for i in range(1, len(dB)) if dB[i] >= L)
    return float(np.interp(L, dB[k - 1 : k + 1], dH[k - 1 : k + 1]))


TRUTH: dict[str, float] = {}


def _coverage_one(seed: int) -> tuple[bool, bool, str, bool]:
    rng = np.random.default_rng(seed)
    base = {"refusal": rng.uniform(-0.75, -0.25, 32), "arc": rng.uniform(0.5, 0.9, 48)}
    a, b, bent = _curve("A", *MONO, base, rng), _curve("B", *OTHER, base, rng), _curve("C", *BENT, base, rng)
    out = decide(base, [a, b, bent], "refusal", "arc", levels=[0.5, 0.85])
    c = next(c for c in out["comparisons"] if c["a"] == "A" and c["b"] == "B" and c["level"] == 0.5)
    m = next(m for m in out["matched"] if m["family"] == "A" and m["level"] == 0.5)
    if not TRUTH:
        TRUTH.update(mono=_truth(MONO, 0.5), other=_truth(OTHER, 0.5), bent=_truth(BENT, 0.85))
    truth_d = TRUTH["mono"] - TRUTH["other"]
    cov_d = c["status"] == "ok" and c["ci95"][0] <= truth_d <= c["ci95"][1]
    cov_m = m["status"] == "ok" and m["ci95"][0] <= TRUTH["mono"] <= m["ci95"][1]
    k = next(m for m in out["matched"] if m["family"] == "C" and m["level"] == 0.85)
    missed = k["status"] == "ok" and not (k["ci95"][0] <= TRUTH["bent"] <= k["ci95"][1])
    return cov_d, cov_m, k["status"], missed


def test_intervals_cover_95_percent_at_32_and_48_items_and_bent_curves_are_flagged():
    sims = 1000
    res = pmap(_coverage_one, range(30_000, 30_000 + sims))
    cov_d = sum(r[0] for r in res) / sims
    cov_m = sum(r[1] for r in res) / sims
    assert 0.93 <= cov_d <= 0.97, cov_d
    assert 0.93 <= cov_m <= 0.97, cov_m
    # the curve that bends back: reported ill-conditioned, or its interval covers (it was "ok" and covered 85%)
    missed = sum(r[3] for r in res) / sims
    flagged = sum(r[2] == "ill-conditioned" for r in res) / sims
    assert missed <= 0.05 and flagged >= 0.5, (missed, flagged)


# ----------------------------------------------------------------------------------------------- items to decide


def _predict_one(seed: int) -> list[tuple[float, bool]]:
    """A difference drawn from a wide range; analysed at 32/48 items, then again with twice the items (the first
    half kept): each open comparison's stated P(decided at 2×) against what the second analysis decides."""
    rng = np.random.default_rng(seed)
    shift = rng.uniform(-0.06, 0.06)
    base, fams = readme_regime(rng, n_fams=2, shift=shift, n_align=64, n_help=96)
    half_b = {"refusal": base["refusal"][:32], "arc": base["arc"][:48]}
    half_f = [
        Family(f.name, f.knob, f.settings, f.values, {"refusal": f.scores["refusal"][:, :32], "arc": f.scores["arc"][:, :48]}) for f in fams
    ]
    first = decide(half_b, half_f, "refusal", "arc", levels=[0.5, 1.0])
    second = {c["id"]: c for c in decide(base, fams, "refusal", "arc", levels=[0.5, 1.0])["comparisons"]}
    out = []
    for c in first["comparisons"]:
        if c["status"] == "ok" and not c["decided"] and c["id"] in second and second[c["id"]]["status"] == "ok":
            pp = c["to_decide"]["predictive_probability"]["x2"]
            if pp is not None:
                out.append((pp, bool(second[c["id"]]["decided"])))
    return out


def test_predictive_probability_of_deciding_matches_what_happens():
    sims = 400
    pairs = [x for r in pmap(_predict_one, range(40_000, 40_000 + sims)) for x in r]
    assert len(pairs) >= 200
    pred = np.array([p for p, _ in pairs])
    seen = np.array([d for _, d in pairs], dtype=float)
    assert abs(pred.mean() - seen.mean()) <= 0.07, (pred.mean(), seen.mean(), len(pairs))
    lo, hi = pred < 0.3, pred >= 0.3  # and within each half of the stated probabilities
    for sel in (lo, hi):
        if sel.sum() >= 50:
            assert abs(pred[sel].mean() - seen[sel].mean()) <= 0.07, (pred[sel].mean(), seen[sel].mean(), int(sel.sum()))
