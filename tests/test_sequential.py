"""The adaptive design of `steertax compare --until-decided` (steertax.analysis.sequential): known boundaries, and
the production loop :func:`run_design` itself, with a simulated scorer in place of the model (each look scores a
longer prefix of one seeded item pool, as the compare store's seeded cells do), checked by simulation: its
family-wise error under no difference with many looks and a rerun that raises the budget, and its power against one
analysis at the full budget."""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import numpy as np
import pytest
from scipy import stats as sps

from decide_sims import pmap, readme_regime
from steertax.analysis.decide import Family, decide
from steertax.analysis.sequential import Design, boundaries, obf_spent, run_design, scope_hash

START = {"refusal": 32, "arc": 48}
CAP = {"refusal": 160, "arc": 176}  # 8 steps of 16 past the start: 9 looks
SHIFT = 0.01  # the power check's real difference; docs/guide/compare.md gives the loss at smaller ones


def test_obf_spending_and_boundaries_known_values():
    assert obf_spent(1.0, 0.05) == pytest.approx(0.05)
    assert obf_spent(0.25, 0.05) == pytest.approx(2 - 2 * sps.norm.cdf(1.959963984540054 / 0.5))
    b = boundaries([0.25, 0.5, 0.75, 1.0], 0.05)
    assert [x["alpha_spent"] for x in b] == pytest.approx(list(obf_spent(np.array([0.25, 0.5, 0.75, 1.0]), 0.05)))
    assert b[0]["critical_value"] == pytest.approx(1.959963984540054 / 0.5, rel=1e-6)  # look 1: its own spend
    crits = [x["critical_value"] for x in b]
    assert crits == sorted(crits, reverse=True) and crits[-1] == pytest.approx(2.04, abs=0.02)
    # the looks are correlated, so the nominal levels add to more than α while the chance of any crossing is α
    assert sum(x["nominal_alpha"] for x in b) > 0.05 and b[-1]["nominal_alpha"] < 0.05
    rng = np.random.default_rng(5)  # an independent check of that chance on fresh Brownian paths
    t = np.array([0.25, 0.5, 0.75, 1.0])
    W = np.cumsum(rng.normal(0, np.sqrt(np.diff(np.r_[0, t])), (400_000, 4)), axis=1)
    crossed = (np.abs(W) / np.sqrt(t) >= np.array(crits)).any(axis=1).mean()
    assert crossed == pytest.approx(0.05, abs=0.0015)
    # a look's boundary depends only on the looks up to it: a rerun that adds looks keeps the earlier ones
    assert boundaries([0.25, 0.5], 0.05) == b[:2]
    with pytest.raises(ValueError, match="must increase"):
        boundaries([0.5, 0.25], 0.05)
    # the largest of m statistics: a lower nominal level per look, and still α for any crossing of any of them
    b5 = boundaries([0.25, 0.5, 0.75, 1.0], 0.05, m=5)
    assert all(x["nominal_alpha"] <= y["nominal_alpha"] + 1e-4 for x, y in zip(b5[1:], b[1:], strict=True))
    W5 = np.cumsum(rng.normal(0, np.sqrt(np.diff(np.r_[0, t]))[None, :, None], (200_000, 4, 5)), axis=1)
    M = np.abs(W5).max(axis=2) / np.sqrt(t)
    assert (M >= np.array([x["critical_value"] for x in b5])).any(axis=1).mean() == pytest.approx(0.05, abs=0.002)
    one = 1 - (1 - 2 * sps.norm.sf(b5[-1]["critical_value"])) ** 5
    assert b5[-1]["nominal_alpha"] == pytest.approx(one)


def test_design_record_round_trips_and_a_scope_names_its_comparison():
    d = Design(alpha=0.05, cap={"a": 64, "b": 96}, scope=scope_hash({"folders": ["x"]}))
    d.looks.append({"look": 1, "items": {"a": 32, "b": 48}, "fraction": 0.5})
    d.decided["A | B | 0.5"] = {"id": "A | B | 0.5", "look": 1}
    back = Design.from_json(json.loads(json.dumps(d.to_json())))
    assert back == d and d.fraction({"a": 32, "b": 48}) == 0.5 and d.fraction({"a": 999, "b": 999}) == 1.0
    assert scope_hash({"folders": ["x"]}) != scope_hash({"folders": ["y"]}) and len(d.scope) == 16


# ----------------------------------------------------------------------------------------------- the loop, simulated


def _scorer(base: dict[str, np.ndarray], fams: list[Family], levels: list[float]) -> Callable[..., dict[str, Any]]:
    """``analyze`` for run_design: decide on the first ``items`` of every task's pool (what the store would hold)."""

    def analyze(items: dict[str, int], a_k: float, skip: set[str], future: float) -> dict[str, Any]:
        b = {t: x[: items[t]] for t, x in base.items()}
        fs = [Family(f.name, f.knob, f.settings, f.values, {t: y[:, : items[t]] for t, y in f.scores.items()}, group=f.group) for f in fams]
        return decide(b, fs, "refusal", "arc", levels=levels, alpha=a_k, skip=sorted(skip), future_alpha=future, n_boot=500)

    return analyze


LEVELS = [0.35, 0.7, 1.05]


def _pool(seed: int, shift: float = 0.0) -> tuple[dict[str, np.ndarray], list[Family]]:
    return readme_regime(np.random.default_rng(seed), n_fams=4, shift=shift, n_align=CAP["refusal"], n_help=CAP["arc"])


def _null_loop(seed: int) -> tuple[bool, int]:
    """Under no difference: a first run with budget 48, then a rerun that raises it to the cap (128)."""
    base, fams = _pool(seed)
    analyze = _scorer(base, fams, LEVELS)
    d = Design(alpha=0.05, cap=dict(CAP), scope="sim")
    run_design(d, dict(START), analyze, budget=48, step=16)
    saved = Design.from_json(json.loads(json.dumps(d.to_json())))  # the record, as a rerun reads it
    res = run_design(saved, dict(saved.looks[-1]["items"]), analyze, budget=128, step=16)
    return bool(saved.decided) or any(c.get("decided") for c in res["comparisons"]), len(saved.looks)


@pytest.mark.slow
def test_the_adaptive_loop_keeps_the_family_wise_error_with_many_looks_and_a_rerun():
    sims = 500
    res = pmap(_null_loop, range(50_000, 50_000 + sims))
    assert all(n == 9 for _, n in res)  # under no difference every look is taken: 4 in the first run, 5 in the rerun
    fwer = sum(w for w, _ in res) / sims
    assert fwer <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / sims), fwer


def _power_loop(seed: int) -> tuple[bool, bool]:
    """One real difference (m0 loses SHIFT more than the others): decided by the adaptive loop (budget to the cap),
    and by one analysis of the full pool at α?"""
    base, fams = _pool(seed, shift=SHIFT)
    analyze = _scorer(base, fams, LEVELS)
    d = Design(alpha=0.05, cap=dict(CAP), scope="sim")
    res = run_design(d, dict(START), analyze, budget=128, step=16)

    def hit(rows: list[dict[str, Any]]) -> bool:
        return any(c.get("decided") and c["a"] == "m0" and c["b"] == "m2" and c["verdict"] == "m2 cheaper" for c in rows)

    one = analyze(dict(CAP), 0.05, set(), 0.05)
    return hit(res["comparisons"]), hit(one["comparisons"])


@pytest.mark.slow
def test_the_adaptive_loop_decides_a_real_difference_as_often_as_one_full_analysis():
    sims = 300
    res = pmap(_power_loop, range(60_000, 60_000 + sims))
    adaptive = sum(a for a, _ in res) / sims
    full = sum(f for _, f in res) / sims
    assert adaptive >= full - 0.05 and full > 0.3, (adaptive, full)


def test_run_design_keeps_decisions_saves_every_look_and_stops_at_the_cap():
    base, fams = _pool(1, shift=0.2)  # a large difference: decided early
    analyze = _scorer(base, fams, LEVELS)
    saved: list[dict[str, Any]] = []
    d = Design(alpha=0.05, cap=dict(CAP), scope="sim")
    res = run_design(d, dict(START), analyze, budget=32, step=16, save=lambda x: saved.append(json.loads(json.dumps(x.to_json()))))
    assert [lk["items"] for lk in d.looks][:1] == [START] and len(saved) == len(d.looks) <= 3
    assert all(b["items"]["refusal"] <= 32 + 32 for b in d.looks)  # this run's budget
    early = {i for lk in d.looks for i in lk["decided"]}
    assert early and {c["id"] for c in res["comparisons"] if c.get("look")} == early
    for c in res["comparisons"]:  # a kept decision carries the look that made it; an open one the last look's figures
        assert c.get("look") is None or c["decided"]
    # a rerun past the cap adds nothing: the last look stands, no α is spent again
    more = run_design(d, dict(d.looks[-1]["items"]), analyze, budget=10_000, step=16)
    assert d.looks[-1]["items"]["refusal"] <= CAP["refusal"] and d.looks[-1]["alpha_spent"] <= 0.05 + 1e-12
    assert {c["id"] for c in more["comparisons"] if c.get("look")} >= early


def test_power_spending_known_values():
    """Kim–DeMets' α·t^ρ: the spend by each look, and the chance of any crossing on fresh Brownian paths is α."""
    t = np.array([0.25, 0.5, 0.75, 1.0])
    b = boundaries(list(t), 0.05, spending="power-6")
    assert [x["alpha_spent"] for x in b] == pytest.approx(list(0.05 * t**6))
    W = np.cumsum(np.random.default_rng(9).normal(0, np.sqrt(np.diff(np.r_[0, t])), (400_000, 4)), axis=1)
    crossed = (np.abs(W) / np.sqrt(t) >= np.array([x["critical_value"] for x in b])).any(axis=1).mean()
    assert crossed == pytest.approx(0.05, abs=0.0015)
    assert b[-1]["nominal_alpha"] > boundaries(list(t), 0.05)[-1]["nominal_alpha"]  # more of α left for the last look
    with pytest.raises(ValueError, match="unknown spending"):
        boundaries(list(t), 0.05, spending="pocock")
    # a design keeps its spending through its record; a record naming an unknown one is refused
    d = Design(alpha=0.05, cap={"a": 64}, scope="s", spending="power-6")
    assert Design.from_json(json.loads(json.dumps(d.to_json()))) == d
    with pytest.raises(ValueError, match="unknown spending"):
        Design.from_json({**d.to_json(), "spending": "pocock"})
