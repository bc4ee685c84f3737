"""Decisions at matched alignment (steertax.analysis.decide): known answers, and the intervals, error rates,
power plans and the adaptive mode checked by simulation (seeded: the same draws every run)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steertax.analysis.decide import (
    Family,
    adjust_pvalues,
    decide,
    default_levels,
    detectable_difference,
    interpolate_at,
    items_needed,
    sequential_levels,
)

# ----------------------------------------------------------------------------------------------- known answers


def test_interpolate_first_crossing_linear_and_not_reached():
    dB = np.array([[0.0, 0.4, 0.8, 0.6], [0.0, 0.2, 0.3, 0.35]])
    dH = np.array([[0.0, -0.1, -0.3, -0.5], [0.0, -0.1, -0.2, -0.3]])
    h, seg = interpolate_at(dB, dH, 0.6)
    assert h[0] == pytest.approx(-0.2) and seg[0] == 1  # halfway along the second segment, not the later fall
    assert math.isnan(h[1]) and seg[1] == -1  # row 2 never reaches 0.6
    h2, _ = interpolate_at(dB, dH, np.array([0.2, 0.3]))  # one level per row
    assert h2 == pytest.approx([-0.05, -0.2])


def test_holm_and_bh_known_values():
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    holm = adjust_pvalues(p, "holm")
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert holm[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(holm[4])
    bh = adjust_pvalues(p, "bh")
    # 0.005*4/1=0.02, 0.01*4/2=0.02, 0.03*4/3=0.04, 0.04*4/4=0.04
    assert bh[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    with pytest.raises(ValueError, match="holm"):
        adjust_pvalues(p, "bonferroni-ish")


def test_items_needed_and_detectable_formula():
    # z_{0.975} + z_{0.8} = 1.95996 + 0.84162 = 2.80158; se 0.01 at 100 items, d 0.02 -> 100 * (2.80158/2)^2 = 196.2 -> 197
    assert items_needed(0.01, 100, 0.02) == 197
    assert items_needed(0.01, 100, -0.02) == 197
    assert items_needed(0.01, 100, 0.0) is None
    assert detectable_difference(0.01) == pytest.approx(0.0280158, abs=1e-6)
    assert items_needed(0.01, 100, 0.02, m=5) > 197  # the Bonferroni level of 5 tests asks more


def test_sequential_levels_spend_at_most_alpha():
    lv = sequential_levels([0.25, 0.5, 0.75, 1.0], 0.05)
    assert sum(lv) == pytest.approx(0.05) and lv == sorted(lv)  # little early, most at the end
    assert lv[0] == pytest.approx(0.05 / 16)
    with pytest.raises(ValueError):
        sequential_levels([0.5, 0.25])


def test_default_levels_spread_below_the_highest_top():
    assert default_levels({"a": 1.2, "b": 0.8}) == pytest.approx([0.3, 0.6, 0.9])
    assert default_levels({"a": -0.1}) == []


# ----------------------------------------------------------------------------------------------- simulation

ALIGN, HELP = "refusal", "arc"
TRUE = {  # per family: true ΔB and ΔH of each setting (knob order from the base)
    "A": ([0.4, 0.8, 1.2], [-0.01, -0.04, -0.09]),
    "B": ([0.6, 1.2], [-0.02, -0.05]),
}


def _truth_at(name: str, L: float) -> float:
    b, h = TRUE[name]
    return float(np.interp(L, [0.0, *b], [0.0, *h]))


def _simulate(rng, n: int, truth=TRUE):
    """Per-item scores: an item effect shared by every method (so methods are correlated on an item), a
    setting effect, heteroscedastic item-by-setting noise."""
    u, v = rng.normal(size=n), rng.normal(size=n)
    base = {ALIGN: 0.5 * u, HELP: 0.5 + 0.2 * v}
    fams = []
    for name, (tb, th) in truth.items():
        ya = np.stack([base[ALIGN] + b + 0.3 * b * u + rng.normal(0, 0.4, n) for b in tb])
        yh = np.stack([base[HELP] + h + 0.5 * h * v + rng.normal(0, 0.06, n) for h in th])
        fams.append(Family(name, "k", [f"{name}{j}" for j in range(len(tb))], list(range(1, len(tb) + 1)), {ALIGN: ya, HELP: yh}))
    return base, fams


def test_matched_interval_covers_the_truth_about_95_percent():
    rng = np.random.default_rng(20261202)
    L = 0.7
    truth_diff = _truth_at("A", L) - _truth_at("B", L)
    hits_diff = hits_a = 0
    sims = 1000
    for _ in range(sims):
        base, fams = _simulate(rng, 200)
        res = decide(base, fams, ALIGN, HELP, levels=[L], n_boot=400, seed=int(rng.integers(1 << 30)))
        c = next(c for c in res["comparisons"] if c["level"] == L)
        hits_diff += c["ci95"][0] <= truth_diff <= c["ci95"][1]
        ma = next(m for m in res["matched"] if m["family"] == "A")
        hits_a += ma["ci95"][0] <= _truth_at("A", L) <= ma["ci95"][1]
    assert 0.93 <= hits_diff / sims <= 0.97, hits_diff / sims
    assert 0.93 <= hits_a / sims <= 0.97, hits_a / sims


def test_no_true_difference_decides_wrongly_at_most_alpha():
    rng = np.random.default_rng(7)
    same = {"A": TRUE["A"], "B": TRUE["A"]}
    wrong, sims = 0, 1000
    for _ in range(sims):
        base, fams = _simulate(rng, 120, same)
        res = decide(base, fams, ALIGN, HELP, levels=[0.3, 0.6, 0.9], n_boot=300, seed=int(rng.integers(1 << 30)))
        wrong += any(c["decided"] for c in res["comparisons"])  # any decision at any level is wrong here
    se = math.sqrt(0.05 * 0.95 / sims)
    assert wrong / sims <= 0.05 + 2 * se, wrong / sims


def test_planned_items_reach_about_80_percent_power():
    rng = np.random.default_rng(11)
    L = 0.7
    d = _truth_at("A", L) - _truth_at("B", L)
    base, fams = _simulate(rng, 400)
    pilot = decide(base, fams, ALIGN, HELP, levels=[L], n_boot=2000, seed=1)
    c = pilot["comparisons"][0]
    n_plan = items_needed(c["se"], 400, d, 0.05, 0.8, m=1)
    assert n_plan is not None and 400 < n_plan < 20000
    sims, right = 300, 0
    for _ in range(sims):
        base, fams = _simulate(rng, n_plan)
        r = decide(base, fams, ALIGN, HELP, levels=[L], n_boot=300, seed=int(rng.integers(1 << 30)))["comparisons"][0]
        right += r["decided"] and np.sign(r["diff"]) == np.sign(d)
    assert 0.7 <= right / sims <= 0.9, (n_plan, right / sims)


def test_adaptive_looks_keep_the_error_rate_under_alpha():
    """Optional stopping with the spending rule: add item chunks until decided or the budget ends."""
    rng = np.random.default_rng(3)
    same = {"A": TRUE["A"], "B": TRUE["A"]}
    looks = [60, 120, 180, 240]
    alphas = sequential_levels([n / looks[-1] for n in looks], 0.05)
    wrong, sims = 0, 600
    for _ in range(sims):
        base, fams = _simulate(rng, looks[-1], same)
        for n, a in zip(looks, alphas, strict=True):
            sub_b = {t: x[:n] for t, x in base.items()}
            sub_f = [Family(f.name, f.knob, f.settings, f.values, {t: y[:, :n] for t, y in f.scores.items()}) for f in fams]
            r = decide(sub_b, sub_f, ALIGN, HELP, levels=[0.3, 0.6], alpha=a, n_boot=300, seed=int(rng.integers(1 << 30)))
            if any(c["decided"] for c in r["comparisons"]):
                wrong += 1
                break
    assert wrong / sims <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / sims), wrong / sims


# ----------------------------------------------------------------------------------------------- behaviour


def test_flat_segment_is_ill_conditioned_and_a_level_beyond_reach_is_not_reached():
    rng = np.random.default_rng(0)
    n = 150
    base = {ALIGN: np.zeros(n), HELP: np.full(n, 0.5)}
    flat = np.stack([1.0 + rng.normal(0, 0.3, n), 1.0 + rng.normal(0, 0.3, n)])  # rises to 1, then flat
    help_ = np.stack([0.45 + rng.normal(0, 0.01, n), 0.40 + rng.normal(0, 0.01, n)])
    fam = Family("S", "r", ["r1", "r2"], [1, 2], {ALIGN: flat, HELP: help_})
    other = Family("T", "r", ["t1", "t2"], [1, 2], {ALIGN: np.stack([np.full(n, 0.5), np.full(n, 1.0)]), HELP: help_})
    res = decide(base, [fam, other], ALIGN, HELP, levels=[0.5, 1.0, 3.0], n_boot=300)
    st = {(m["family"], m["level"]): m["status"] for m in res["matched"]}
    assert st[("S", 0.5)] == "ok"
    assert st[("S", 3.0)] == "not reached" and st[("T", 3.0)] == "not reached"
    c3 = next(c for c in res["comparisons"] if c["level"] == 3.0)
    assert c3["decided"] is False and "not reached" in c3["verdict"]


def test_point_family_is_compared_at_its_own_alignment():
    rng = np.random.default_rng(1)
    n = 300
    base = {ALIGN: np.zeros(n), HELP: np.full(n, 0.5)}
    curve = Family(
        "steer",
        "r",
        ["a", "b"],
        [1, 2],
        {
            ALIGN: np.stack([0.5 + rng.normal(0, 0.2, n), 1.0 + rng.normal(0, 0.2, n)]),
            HELP: np.stack([0.45 + rng.normal(0, 0.02, n), 0.30 + rng.normal(0, 0.02, n)]),
        },
    )
    point = Family("dpo", "β", ["x"], [0.1], {ALIGN: (0.75 + rng.normal(0, 0.2, n))[None], HELP: (0.5 + rng.normal(0, 0.02, n))[None]})
    res = decide(base, [curve, point], ALIGN, HELP, levels=[], n_boot=500)
    (c,) = res["comparisons"]
    assert c["a"] == "dpo" and c["level"] == "ΔB of dpo"
    # steering at ΔB 0.75: halfway between -0.05 and -0.20 -> -0.125; dpo 0.0 -> dpo cheaper by ~0.125
    assert c["diff"] == pytest.approx(0.125, abs=0.01) and c["verdict"] == "dpo cheaper"
