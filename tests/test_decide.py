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
    efficient_point,
    interpolate_at,
    items_to_decide,
    predictive_probability,
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


def test_items_to_decide_and_the_predictive_probability_known_values():
    zp = 0.8416212335729143
    plan = items_to_decide(0.02, 0.01, [0.005, 0.035], {"a": 100, "b": 50}, crit=2.5, crit_future=2.0)
    assert plan["detectable_difference"] == pytest.approx((2.5 + zp) * 0.01)  # at today's critical value
    # the range at the later analysis' critical value, for a true difference at either end of the interval
    far = ((2.0 + zp) * 0.01 / 0.035) ** 2
    near = ((2.0 + zp) * 0.01 / 0.005) ** 2
    assert plan["items_range"]["at_far_end"] == {"a": 100, "b": 50}  # already enough (f < 1): the current items
    assert far < 1 and plan["items_range"]["at_near_end"] == {"a": math.ceil(100 * near), "b": math.ceil(50 * near)}
    # P(decided at 2n): the final estimate ~ N(d, se²(1 − n/2n)), its SE se·√½, decided beyond 2.0 of it
    tau, edge = 0.01 * math.sqrt(0.5), 2.0 * 0.01 * math.sqrt(0.5)
    from scipy import stats as sps

    want = sps.norm.sf((edge - 0.02) / tau) + sps.norm.cdf((-edge - 0.02) / tau)
    assert plan["predictive_probability"]["x2"] == pytest.approx(want)
    assert predictive_probability(0.02, 0.01, 100, 100, 2.0) is None and predictive_probability(0.02, 0.0, 100, 200, 2.0) is None
    assert predictive_probability(0.0, 0.01, 100, 400, 2.0) < predictive_probability(0.02, 0.01, 100, 400, 2.0)
    # an interval that includes 0: unbounded at its near end
    assert items_to_decide(0.01, 0.01, [-0.01, 0.03], {"a": 10}, 2.0)["items_range"]["at_near_end"] == {"a": None}
    assert items_to_decide(0.01, float("nan"), None, {"a": 10}, 2.0) == {"critical_value": 2.0, "power": 0.8}


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


# ----------------------------------------------------------------------------------------------- known answers, pinned
# (added to kill the mutants of a mutation run that changed a reported number and no test above noticed)


def _two_task_data(n: int = 40, seed: int = 0):
    """A non-constant base on both tasks, two curves and a point: small, exact inputs for recomputation."""
    rng = np.random.default_rng(seed)
    base = {ALIGN: rng.normal(0.0, 0.3, n), HELP: rng.uniform(0.3, 0.7, n)}
    fams = []
    for name, tb, th in (("A", [0.4, 0.8, 1.2], [-0.01, -0.04, -0.09]), ("B", [0.6, 1.2], [-0.02, -0.07])):
        ya = np.stack([base[ALIGN] + b + rng.normal(0, 0.3, n) for b in tb])
        yh = np.stack([base[HELP] + h + rng.normal(0, 0.05, n) for h in th])
        fams.append(Family(name, "k", [f"{name}{j}" for j in range(len(tb))], list(range(1, len(tb) + 1)), {ALIGN: ya, HELP: yh}))
    return base, fams


def test_chain_bootstrap_weights_and_deltas():
    from steertax.analysis.decide import ChainBootstrap

    base = {"t": np.array([0.1, 0.2, 0.4]), "u": np.array([1.0])}  # one item is enough
    cb = ChainBootstrap(base, n_boot=6, seed=3)
    w = cb.weights["t"]
    assert w.shape == (7, 3) and w[0] == pytest.approx([1 / 3] * 3)  # replicate 0: every item once
    assert w.sum(axis=1) == pytest.approx(np.ones(7)) and np.allclose(w * 3, np.round(w * 3))  # counts / n
    assert cb.weights["u"] == pytest.approx(np.ones((7, 1)))
    s = np.array([[0.3, 0.2, 0.7], [0.0, 0.5, 0.4]])
    d = cb.deltas(Family("F", "k", ["s1", "s2"], [1, 2], {"t": s}), "t")
    assert d.shape == (7, 3) and np.all(d[:, 0] == 0)  # the base's 0 first
    assert d[0, 1:] == pytest.approx((s - base["t"]).mean(axis=1))  # the change from a non-constant base
    assert d[1:, 1:] == pytest.approx(w[1:] @ (s - base["t"]).T)
    with pytest.raises(ValueError, match="'v' has no items in common"):
        ChainBootstrap({"v": np.array([])}, n_boot=3)


def test_setting_summaries_are_the_bootstrap_se_and_normal_interval():
    from steertax.analysis.decide import ChainBootstrap

    base, fams = _two_task_data()
    res = decide(base, fams, ALIGN, HELP, levels=[], n_boot=60, seed=5)
    cb = ChainBootstrap({ALIGN: base[ALIGN], HELP: base[HELP]}, 60, 5)
    z = 1.959963984540054
    for f in fams:
        for j, row in enumerate(res["settings"][f.name]):
            assert row["setting"] == f.settings[j] and row["value"] == f.values[j]
            for key, task in (("dB", ALIGN), ("dH", HELP)):
                v = cb.deltas(f, task)[:, j + 1]
                s = row[key]
                assert s["estimate"] == pytest.approx(f.scores[task][j].mean() - base[task].mean())
                assert s["se"] == pytest.approx(np.std(v[1:], ddof=1)) and s["n_boot_used"] == 60
                assert s["ci95"] == pytest.approx([s["estimate"] - z * s["se"], s["estimate"] + z * s["se"]])
    # one replicate has no SE (and no interval); two have one
    one = decide(base, fams, ALIGN, HELP, levels=[], n_boot=1)["settings"]["A"][0]["dH"]
    assert math.isnan(one["se"]) and one["ci95"] is None and one["n_boot_used"] == 1
    two = decide(base, fams, ALIGN, HELP, levels=[], n_boot=2)["settings"]["A"][0]["dH"]
    assert math.isfinite(two["se"]) and two["se"] > 0 and two["ci95"] is not None


def test_matched_rows_and_differences_are_recomputed_from_the_replicates():
    from steertax.analysis.decide import ChainBootstrap

    base, fams = _two_task_data()
    L = 0.7
    res = decide(base, fams, ALIGN, HELP, levels=[L], n_boot=400, seed=9)
    cb = ChainBootstrap({ALIGN: base[ALIGN], HELP: base[HELP]}, 400, 9)
    h = {}
    for f in fams:
        hf, seg = interpolate_at(cb.deltas(f, ALIGN), cb.deltas(f, HELP), L)
        h[f.name] = hf
        m = next(r for r in res["matched"] if r["family"] == f.name)
        assert m["status"] == "ok" and m["level"] == L and "values" not in m and "lin" not in m and "dL" not in m
        assert m["estimate"] == pytest.approx(hf[0]) and m["se"] == pytest.approx(np.std(hf[1:], ddof=1))
        k0 = int(seg[0])
        assert m["segment"] == [f.settings[k0 - 1] if k0 else "base", f.settings[k0]]
    assert [r["family"] for r in res["matched"]] == ["A", "B"]
    (c,) = res["comparisons"]
    d = h["A"] - h["B"]
    sd = np.std(d[1:], ddof=1)
    assert (c["a"], c["b"], c["level"], c["status"], c["id"]) == ("A", "B", L, "ok", f"A | B | {L}")
    assert c["diff"] == pytest.approx(d[0]) and c["n_boot_used"] == 400
    # the delta-method SE of the matched difference agrees with the bootstrap SD it replaces
    assert c["se"] == pytest.approx(sd, rel=0.25)
    lo, hi = c["ci95"]
    assert lo < c["diff"] < hi and (hi - c["diff"]) == pytest.approx(c["diff"] - lo)  # symmetric bootstrap-t
    assert 1.5 < (hi - c["diff"]) / c["se"] < 3.5 and c["t"] == pytest.approx(c["diff"] / c["se"])
    assert c["p_adjusted"] == pytest.approx(c["p"]) and res["n_tests"] == 1  # one test: nothing to adjust
    assert res["levels"] == [L] and res["reach"] == {f.name: pytest.approx(cb.deltas(f, ALIGN)[0].max()) for f in fams}
    assert res["n_items"] == {ALIGN: 40, HELP: 40} and res["alpha"] == 0.05 and res["adjust"] == "maxt"
    assert res["power"] == 0.8 and res["n_boot"] == 400


def test_decide_default_levels_and_its_arguments():
    base, fams = _two_task_data()
    res = decide(base, fams, ALIGN, HELP, n_boot=30)
    assert res["levels"] == default_levels(res["reach"]) and len(res["levels"]) == 3
    assert len(res["comparisons"]) == 3 and res["n_tests"] == sum(c["status"] == "ok" for c in res["comparisons"])
    with pytest.raises(ValueError, match="unknown multiplicity adjustment"):
        decide(base, fams, ALIGN, HELP, adjust="bonferroni", n_boot=10)
    bh = decide(base, fams, ALIGN, HELP, levels=[0.3, 0.6], adjust="fdr_bh", n_boot=30)
    assert bh["adjust"] == "fdr_bh"
    ok = [c for c in bh["comparisons"] if c["status"] == "ok"]
    assert [c["p_adjusted"] for c in ok] == pytest.approx(adjust_pvalues([c["p"] for c in ok], "bh"))


def test_a_level_too_many_replicates_miss_is_ill_conditioned():
    rng = np.random.default_rng(2)
    n = 100
    base = {ALIGN: np.zeros(n), HELP: np.full(n, 0.5)}
    ya = np.stack([0.5 + rng.normal(0, 0.3, n), 1.0 + rng.normal(0, 0.5, n)])
    yh = np.stack([0.45 + rng.normal(0, 0.02, n), 0.40 + rng.normal(0, 0.02, n)])
    fam = Family("S", "r", ["r1", "r2"], [1, 2], {ALIGN: ya, HELP: yh})
    other = Family("T", "r", ["t1", "t2"], [1, 2], {ALIGN: np.stack([np.full(n, 0.5), np.full(n, 2.0)]), HELP: yh})
    L = float(ya[1].mean()) - 0.01  # reached at the estimate, missed by about 40 % of the replicates
    res = decide(base, [fam, other], ALIGN, HELP, levels=[L], n_boot=300)
    m = next(r for r in res["matched"] if r["family"] == "S")
    assert m["status"] == "ill-conditioned" and "of replicates do not reach it" in m["why"] and math.isfinite(m["estimate"])
    (c,) = res["comparisons"]
    assert c["decided"] is False and c["verdict"].startswith("not comparable: S: ill-conditioned (")


def test_a_flat_segment_is_reported_ill_conditioned():
    rng = np.random.default_rng(0)
    n = 150
    base = {ALIGN: np.zeros(n), HELP: np.full(n, 0.5)}
    r1 = 1.0 + rng.normal(0, 0.3, n)
    r2 = rng.normal(0, 0.3, n)
    r2 += r1.mean() + 0.02 - r2.mean()  # rises to 1, then only 0.02 more: a rise whose CI includes 0
    help_ = np.stack([0.45 + rng.normal(0, 0.01, n), 0.40 + rng.normal(0, 0.01, n)])
    fam = Family("S", "r", ["r1", "r2"], [1, 2], {ALIGN: np.stack([r1, r2]), HELP: help_})
    other = Family("T", "r", ["t1", "t2"], [1, 2], {ALIGN: np.stack([np.full(n, 0.5), np.full(n, 2.0)]), HELP: help_})
    L = float(r1.mean()) + 0.01  # on the flat second segment
    res = decide(base, [fam, other], ALIGN, HELP, levels=[L], n_boot=300)
    m = next(r for r in res["matched"] if r["family"] == "S")
    assert m["status"] == "ill-conditioned" and "flat" in m["why"] and math.isfinite(m["estimate"])
    t = next(r for r in res["matched"] if r["family"] == "T")
    assert t["status"] == "ok" and t["segment"] == ["t1", "t2"]


def test_interpolate_at_a_level_met_from_above_and_a_single_segment():
    h, seg = interpolate_at(np.array([[0.0, -0.5]]), np.array([[0.0, 0.2]]), -0.5)  # reached exactly, from above
    assert h[0] == pytest.approx(0.2) and seg[0] == 0
    h, seg = interpolate_at(np.array([[0.0, 0.3]]), np.array([[0.0, -0.1]]), 0.6)  # one segment, not reached
    assert math.isnan(h[0]) and seg[0] == -1


def test_adjust_pvalues_default_caps_and_aliases():
    p = [0.6, 0.7, 0.01]
    assert adjust_pvalues(p) == pytest.approx(adjust_pvalues(p, "holm"))  # Holm by default
    assert adjust_pvalues(p, "holm") == pytest.approx([1.0, 1.0, 0.03])  # 3·0.01, then 2·0.6 = 1.2 capped at 1
    assert adjust_pvalues(p, "bh") == pytest.approx([0.7, 0.7, 0.03])  # 3·0.01, 1.5·0.6 = 0.9, 0.7: step-up
    assert adjust_pvalues(p, "fdr_bh") == pytest.approx([0.7, 0.7, 0.03])
    assert adjust_pvalues([0.3]) == pytest.approx([0.3]) and adjust_pvalues([0.3], "bh") == pytest.approx([0.3])
    empty = adjust_pvalues([float("nan")] * 2)
    assert len(empty) == 2 and all(math.isnan(x) for x in empty)
    with pytest.raises(ValueError, match="unknown multiplicity adjustment 'x'"):
        adjust_pvalues(p, "x")


def test_default_levels_edges_and_rounding():
    assert default_levels({}) == [] and default_levels({"a": 0.0}) == [] and default_levels({"a": float("nan")}) == []
    assert default_levels({"a": 0.12345}) == [0.03, 0.06, 0.09]  # rounded to 2 decimals
    assert default_levels({"a": 1.0}, k=1) == [0.5]


def test_bootstrap_null_pvalues_and_max_t_known_values():
    from steertax.analysis.decide import bootstrap_null_pvalues, max_t_adjust

    est = np.array([1.0, 0.2])
    reps = np.array([[1.5, 0.1], [0.0, 0.9], [1.2, np.nan], [0.9, 0.2]])
    se = np.array([[0.5, 0.1], [0.5, 0.1], [1.0, 0.1], [0.5, 0.1], [0.25, 0.1]])
    t, T, p = bootstrap_null_pvalues(est, reps, se)
    assert t == pytest.approx([2.0, 2.0])
    # T_b = |d_b − d| / SE_b: column 0 → 1, 1, 0.4, 0.4; column 1 → 1, 7, 0 (unreached: no evidence), 0
    assert T == pytest.approx(np.array([[1.0, 1.0], [1.0, 7.0], [0.4, 0.0], [0.4, 0.0]]))
    assert p == pytest.approx([1 / 5, 2 / 4])  # (1 + #|T| ≥ 2) / (1 + replicates that reach)
    adj, crit = max_t_adjust(t, T, alpha=0.25)
    # both |t| = 2 (a tie keeps the order): step 1 max over both → 1, 7, 0.4, 0.4 → (1 + 1)/5; step 2 column 1 alone
    assert adj == pytest.approx([2 / 5, 2 / 5]) and crit == pytest.approx(np.quantile([1.0, 7.0, 0.4, 0.4], 0.75))
    t0, _, p0 = bootstrap_null_pvalues(np.array([0.5]), np.empty((0, 1)), np.array([[0.1]]))
    assert t0 == pytest.approx([5.0]) and math.isnan(p0[0])
    nan_adj, nan_crit = max_t_adjust(np.array([np.nan]), np.zeros((3, 1)))
    assert math.isnan(nan_adj[0]) and math.isnan(nan_crit)
    # without per-replicate SEs every replicate is divided by the replicates' SD
    t1, T1, _ = bootstrap_null_pvalues(np.array([0.0]), np.array([[1.0], [-1.0]]))
    assert t1 == pytest.approx([0.0]) and T1[:, 0] == pytest.approx([1 / np.sqrt(2)] * 2)


def _brow(a, b, diff, reps, se, **kw):
    reps = np.asarray(reps, dtype=float)
    return {"a": a, "b": b, "level": 0.5, "status": "ok", "diff": diff, "se": se, "_reps": reps, "_se": np.full(len(reps) + 1, se), **kw}


def test_finish_verdicts_known_verdicts_intervals_and_plans():
    from steertax.analysis.decide import bootstrap_null_pvalues, finish_verdicts, max_t_adjust

    n = {ALIGN: 100, HELP: 50}
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, 999)
    rows = [_brow("A", "B", 0.05, 0.05 + 0.01 * z, 0.01), _brow("A", "B", -0.05, -0.05 + 0.01 * z, 0.01)]
    rows += [_brow("A", "B", 0.01, 0.01 + 0.01 * z, 0.01), {"a": "A", "b": "C", "status": "C: not reached"}]
    assert finish_verdicts(rows, n) == 3
    est = np.array([0.05, -0.05, 0.01])
    t, T, p = bootstrap_null_pvalues(est, np.stack([0.01 * z] * 3, axis=1) + est, np.full((1000, 3), 0.01))
    adj, crit = max_t_adjust(t, T)
    assert [r["p"] for r in rows[:3]] == pytest.approx(p) and [r["p_adjusted"] for r in rows[:3]] == pytest.approx(adj)
    assert rows[0]["verdict"] == "A cheaper" and rows[0]["decided"] is True and rows[0]["p"] == pytest.approx(1 / 1000)
    assert rows[1]["verdict"] == "B cheaper" and rows[1]["decided"] is True
    q = np.quantile(np.abs(z), 0.95)
    assert rows[0]["ci95"] == pytest.approx([0.05 - q * 0.01, 0.05 + q * 0.01])
    assert "to_decide" not in rows[0] and "_reps" not in rows[0] and "_se" not in rows[0]
    und = rows[2]
    assert und["decided"] is False and und["verdict"] == "can't tell with 100 refusal items and 50 arc items"
    plan = und["to_decide"]
    assert plan["critical_value"] == pytest.approx(crit) and plan["power"] == 0.8
    assert und["detectable_difference"] == pytest.approx((crit + 0.8416212335729143) * 0.01)
    # the later analysis' critical value: the replicates standardized by their SD (large-sample max-|Z|)
    zs = np.abs(z) / np.std(z, ddof=1)
    assert plan["future_critical_value"] == pytest.approx(np.quantile(zs, 0.95))
    assert plan["items_range"]["at_near_end"] == {ALIGN: None, HELP: None}  # its interval includes 0: unbounded
    f = ((plan["future_critical_value"] + 0.8416212335729143) * 0.01 / (0.01 + q * 0.01)) ** 2
    assert plan["items_range"]["at_far_end"] == {ALIGN: math.ceil(100 * max(f, 1)), HELP: math.ceil(50 * max(f, 1))}
    assert 0 < plan["predictive_probability"]["x2"] < plan["predictive_probability"]["x4"] < 1
    assert rows[3]["verdict"] == "not comparable: C: not reached" and rows[3]["decided"] is False
    # a one-task contrast names only its task; a later analysis' critical value is the one planned for
    one = [_brow("A", "B", 0.01, 0.01 + 0.01 * z, 0.01, task=HELP)]
    assert finish_verdicts(one, n, future_alpha=0.001) == 1
    assert one[0]["verdict"] == "can't tell with 50 arc items" and list(one[0]["to_decide"]["items_range"]["at_far_end"]) == [HELP]
    assert one[0]["to_decide"]["future_critical_value"] == pytest.approx(np.quantile(zs, 0.999))
    # Holm and BH adjust the same bootstrap p-values
    for method in ("holm", "bh"):
        r2 = [_brow("A", "B", 0.03, 0.03 + 0.01 * z, 0.01), _brow("A", "B", 0.025, 0.025 + 0.01 * z, 0.01)]
        finish_verdicts(r2, n, adjust=method)
        assert [r["p_adjusted"] for r in r2] == pytest.approx(adjust_pvalues([r["p"] for r in r2], method))
    with pytest.raises(ValueError, match="unknown multiplicity adjustment"):
        finish_verdicts([_brow("A", "B", 0.0, z, 1.0)], n, adjust="bonferroni")


def test_setting_contrasts_known_values_and_verdicts():
    from steertax.analysis.decide import setting_contrasts

    base, fams = _two_task_data()
    pairs = [("A/A0", "B/B0"), ("A/A2", "A/A0"), ("A/A0", "Z/z"), ("Q/q", "B/B1")]
    res = setting_contrasts(base, fams, [ALIGN, HELP], pairs, n_boot=400, seed=4)
    assert res["tasks"] == [ALIGN, HELP] and res["n_items"] == {ALIGN: 40, HELP: 40} and res["n_tests"] == 4
    assert res["alpha"] == 0.05 and res["adjust"] == "maxt"
    rows = {(r["a"], r["b"], r["task"]): r for r in res["comparisons"]}
    assert len(res["comparisons"]) == 8 and [(r["a"], r["task"]) for r in res["comparisons"][:2]] == [("A/A0", ALIGN), ("A/A0", HELP)]
    for t in (ALIGN, HELP):
        q = rows[("Q/q", "B/B1", t)]
        assert q["status"] == "unknown setting 'Q/q'" and q["level"] == t and q["verdict"] == "not comparable: unknown setting 'Q/q'"
    r = rows[("A/A0", "B/B0", HELP)]
    x = fams[0].scores[HELP][0] - fams[1].scores[HELP][0]  # paired item differences
    assert r["level"] == HELP and r["diff"] == pytest.approx(x.mean())
    assert r["se"] == pytest.approx(np.std(x) / np.sqrt(len(x)))  # the delta-method SE of a mean difference
    assert 0 < r["p"] <= 1 and r["t"] == pytest.approx(x.mean() / r["se"])
    up = rows[("A/A2", "A/A0", ALIGN)]  # +0.8 on the alignment task: decided, the larger change wins
    assert up["decided"] is True and up["verdict"] == f"A/A2 higher on {ALIGN}"
    down = rows[("A/A2", "A/A0", HELP)]  # −0.08 on helpfulness
    assert down["decided"] is True and down["verdict"] == f"A/A0 higher on {HELP}"
    bad = rows[("A/A0", "Z/z", ALIGN)]
    assert bad["status"] == "unknown setting 'Z/z'" and bad["decided"] is False and bad["verdict"].startswith("not comparable")
    und = [c for c in res["comparisons"] if c["status"] == "ok" and not c["decided"]]
    for c in und:
        assert c["verdict"] == f"can't tell with 40 {c['task']} items" and list(c["to_decide"]["items_range"]["at_far_end"]) == [c["task"]]


def _rising(n, rng, top_sd=0.5):
    base = {ALIGN: np.zeros(n), HELP: np.full(n, 0.5)}
    ya = np.stack([0.5 + rng.normal(0, 0.3, n), 1.0 + rng.normal(0, top_sd, n)])
    yh = np.stack([0.45 + rng.normal(0, 0.02, n), 0.40 + rng.normal(0, 0.02, n)])
    fam = Family("S", "r", ["r1", "r2"], [1, 2], {ALIGN: ya, HELP: yh})
    other = Family("T", "r", ["t1", "t2"], [1, 2], {ALIGN: np.stack([np.full(n, 0.5), np.full(n, 2.0)]), HELP: yh})
    return base, fam, other


def test_the_unreached_share_counts_every_replicate_and_only_replicates():
    from steertax.analysis.decide import ChainBootstrap

    rng = np.random.default_rng(4)
    base, fam, other = _rising(60, rng)
    nb = 40
    # a seed whose lowest replicate top is not replicate 1, and a level that exactly one replicate misses
    for seed in range(100):
        tops = ChainBootstrap({ALIGN: base[ALIGN], HELP: base[HELP]}, nb, seed).deltas(fam, ALIGN)[1:].max(axis=1)
        if np.argmin(tops) != 0:
            break
    srt = np.sort(tops)
    one = (srt[0] + srt[1]) / 2  # 1 of 40 = 2.5 %: not more than the share, still ok
    two = (srt[1] + srt[2]) / 2  # 2 of 40 = 5 %: ill-conditioned
    res = decide(base, [fam, other], ALIGN, HELP, levels=[one, two], n_boot=nb, seed=seed)
    m = {r["level"]: r for r in res["matched"] if r["family"] == "S"}
    assert m[one]["status"] == "ok" and m[one]["n_boot_used"] == nb - 1
    assert m[two]["status"] == "ill-conditioned" and m[two]["why"] == "5% of replicates do not reach it"
    c = next(c for c in res["comparisons"] if c["level"] == two)
    assert c["verdict"] == "not comparable: S: ill-conditioned (5% of replicates do not reach it)"


def test_the_estimate_decides_reached_and_the_segment_not_replicate_one():
    from steertax.analysis.decide import ChainBootstrap

    rng = np.random.default_rng(6)
    base, fam, other = _rising(60, rng)
    boot = lambda s: ChainBootstrap({ALIGN: base[ALIGN], HELP: base[HELP]}, 50, s)  # noqa: E731
    est = boot(0).deltas(fam, ALIGN)[0]
    above = float(est.max()) + 0.005  # not reached by the estimate, reached by some replicates
    knot = float(est[1]) + 0.005  # just past r1: the estimate's segment is r1 -> r2
    # a seed whose replicate 1 reaches `above` and crosses `knot` on its first segment, base -> r1
    seed = next(s for s in range(200) if (d := boot(s).deltas(fam, ALIGN)[1]).max() >= above and d[1] >= knot)
    res = decide(base, [fam, other], ALIGN, HELP, levels=[above, knot], n_boot=50, seed=seed)
    m = {r["level"]: r for r in res["matched"] if r["family"] == "S"}
    assert m[above]["status"] == "not reached" and set(m[above]) == {"level", "family", "status"}
    assert m[knot]["status"] == "ok" and m[knot]["segment"] == ["r1", "r2"]
    c = next(c for c in res["comparisons"] if c["level"] == above)
    assert c["verdict"] == "not comparable: S: not reached" and "p" not in c
    low = decide(base, [fam, other], ALIGN, HELP, levels=[0.2], n_boot=50, seed=seed)
    assert next(r for r in low["matched"] if r["family"] == "S")["segment"] == ["base", "r1"]
    t = next(r for r in low["matched"] if r["family"] == "T")
    assert t["segment"] == ["base", "t1"] and t["estimate"] == pytest.approx(-0.05 * 0.2 / 0.5, abs=0.01)


def test_the_flat_rule_uses_the_rise_quantiles_2_5_and_97_5():
    from steertax.analysis.decide import ChainBootstrap

    rng = np.random.default_rng(8)
    n, nb = 80, 400
    e = rng.normal(0, 0.3, n)
    e -= e.mean()
    base = {ALIGN: np.zeros(n), HELP: np.full(n, 0.5)}
    rise0 = ChainBootstrap(base, nb, 0).weights[ALIGN][1:] @ e  # the rise's replicates before its shift
    yh = np.stack([0.45 + rng.normal(0, 0.02, n), 0.40 + rng.normal(0, 0.02, n), 0.3 + rng.normal(0, 0.02, n)])

    def status(sign, q_lo, q_hi):
        shift = -(np.percentile(rise0, q_lo) + np.percentile(rise0, q_hi)) / 2  # 0 between the two quantiles
        # base -> r1 (ΔB ±1 on every item) -> r2 (±1 ± the rise) -> r3 (±3): a replicate that falls on r1 -> r2
        # still reaches the level on r2 -> r3, so only the rise's interval can make the level ill-conditioned
        ya = sign * np.stack([np.ones(n), 1.0 + e + shift, np.full(n, 3.0)])
        fam = Family("S", "r", ["r1", "r2", "r3"], [1, 2, 3], {ALIGN: ya, HELP: yh})
        res = decide(base, [fam], ALIGN, HELP, levels=[sign * (1 + 1e-9)], n_boot=nb, seed=0)
        m = res["matched"][0]
        return (m["status"], m.get("segment", m.get("why")))

    flat = ("ill-conditioned", "its ΔB is flat on that segment (the rise's 95% CI includes 0)")
    # 0 between the 2.5 % and 3.5 % points of the rise: the 95 % CI includes 0; between 1.5 % and 2.5 %: it does not
    assert status(+1, 2.5, 3.5) == flat and status(+1, 1.5, 2.5) == ("ok", ["r1", "r2"])
    # falling (negative ΔB levels): the same at the other end, 96.5 %-97.5 % and 97.5 %-98.5 %
    assert status(-1, 2.5, 3.5) == flat and status(-1, 1.5, 2.5) == ("ok", ["r1", "r2"])


def test_a_rise_that_is_exactly_zero_in_many_replicates_is_flat():
    n = 20
    rng = np.random.default_rng(1)
    base = {ALIGN: np.zeros(n), HELP: np.full(n, 0.5)}
    yh = np.stack([0.45 + rng.normal(0, 0.02, n), 0.40 + rng.normal(0, 0.02, n)])
    for sign in (+1, -1):  # one item moves on the second segment: most resamples have a rise of exactly 0
        a1 = sign * (1.0 + rng.normal(0, 0.3, n))
        a2 = a1.copy()
        a2[0] += sign * 0.5
        fam = Family("S", "r", ["r1", "r2"], [1, 2], {ALIGN: np.stack([a1, a2]), HELP: yh})
        L = float(a1.mean()) + sign * 0.01
        res = decide(base, [fam], ALIGN, HELP, levels=[L], n_boot=300)
        m = res["matched"][0]
        assert m["status"] == "ill-conditioned" and m["why"] == "its ΔB is flat on that segment (the rise's 95% CI includes 0)"


def test_no_bootstrap_leaves_the_estimate_without_an_interval():
    base, fams = _two_task_data()
    res = decide(base, fams, ALIGN, HELP, levels=[0.7], n_boot=0)
    for m in res["matched"]:
        assert m["status"] == "ok" and math.isnan(m["se"]) and m["ci95"] is None and m["n_boot_used"] == 0
    (c,) = res["comparisons"]
    assert c["status"] == "ok" and math.isnan(c["p"]) and c["decided"] is False and c["verdict"].startswith("can't tell")


def test_identical_settings_have_no_p_value():
    from steertax.analysis.decide import setting_contrasts

    base, fams = _two_task_data()
    same = Family("C", "k", ["c0", "c1"], [1, 2], {t: np.stack([fams[0].scores[t][0]] * 2) for t in (ALIGN, HELP)})
    res = setting_contrasts(base, [same], [HELP], [("C/c0", "C/c1")], n_boot=50)
    (r,) = res["comparisons"]
    assert r["diff"] == 0.0 and r["se"] == 0.0 and math.isnan(r["p"]) and r["decided"] is False
    assert r["verdict"] == f"can't tell with 40 {HELP} items" and "detectable_difference" not in r["to_decide"]


def test_decide_defaults_are_2000_replicates_seed_0_maxt():
    from steertax.analysis.decide import setting_contrasts

    base, fams = _two_task_data(n=30)
    dflt = decide(base, fams, ALIGN, HELP, levels=[0.7])
    explicit = decide(base, fams, ALIGN, HELP, levels=[0.7], n_boot=2000, seed=0, alpha=0.05, adjust="maxt", power=0.8)
    assert dflt["n_boot"] == 2000 and dflt["adjust"] == "maxt" and dflt["alpha"] == 0.05 and dflt["power"] == 0.8
    assert dflt["comparisons"][0]["p"] == explicit["comparisons"][0]["p"] and dflt["comparisons"][0]["n_boot_used"] == 2000
    assert decide(base, fams, ALIGN, HELP, levels=[0.7], adjust="bh", n_boot=20)["adjust"] == "bh"
    assert dflt["alignment"] == ALIGN and dflt["helpfulness"] == HELP and set(dflt["settings"]) == {"A", "B"} and dflt["rule"]
    pairs = [("A/A0", "B/B0")]
    sc = setting_contrasts(base, fams, [HELP], pairs)
    assert sc["comparisons"][0]["p"] == setting_contrasts(base, fams, [HELP], pairs, n_boot=2000, seed=0)["comparisons"][0]["p"]
    assert sc["comparisons"][0]["n_boot_used"] == 2000


def _knob_family(gain_b, gain_h, n, rng, noise=0.0):
    """A curve whose settings add ``gain_b[j]`` to B and ``gain_h[j]`` to H on every item (plus noise)."""
    base = {"B": rng.normal(0, 0.3, n), "H": rng.normal(0.5, 0.1, n)}
    sc = {
        "B": np.stack([base["B"] + g + noise * rng.normal(0, 1, n) for g in gain_b]),
        "H": np.stack([base["H"] + g + noise * rng.normal(0, 1, n) for g in gain_h]),
    }
    return base, Family("f", "β", [f"s{j}" for j in range(len(gain_b))], [float(10 - j) for j in range(len(gain_b))], sc)


def test_efficient_point_known_answer():
    rng = np.random.default_rng(0)
    base, fam = _knob_family([0.5, 1.0, 1.5], [0.0, -0.1, -0.8], 40, rng)
    val = {t: np.arange(40) % 2 == 0 for t in ("B", "H")}
    e = efficient_point(base, fam, "B", "H", 0.5, val, n_boot=200, seed=1)
    # U = 0.5·ΔH + 0.5·ΔB: 0.25, 0.45, 0.35 (base 0): the middle setting, exactly, on every replicate
    assert e["setting"] == "s1" and e["value"] == 9.0 and e["choice_share"] == {"s1": 1.0}
    assert e["held_out"]["U"]["estimate"] == pytest.approx(0.45) and e["held_out"]["U"]["ci95"] == pytest.approx([0.45, 0.45])
    assert e["choice_range"] == [9.0, 9.0] and e["n_held_out"] == {"B": 20, "H": 20}
    # all weight on helpfulness: nothing beats the base
    assert efficient_point(base, fam, "B", "H", 1.0, val, n_boot=50)["setting"] == "base"
    with pytest.raises(ValueError, match="empty half"):
        efficient_point(base, fam, "B", "H", 0.5, {"B": np.ones(40, bool), "H": val["H"]}, n_boot=10)


def test_efficient_point_held_out_interval_covers_the_truth():
    """The held-out U interval of the chosen setting covers that setting's true U in about 95% of simulations."""
    rng = np.random.default_rng(3)
    gb, gh = [0.3, 0.6, 0.9], [-0.05, -0.15, -0.5]
    true_u = [0.5 * (b + h) for b, h in zip(gb, gh, strict=True)]
    hits, sims = 0, 300
    for k in range(sims):
        base, fam = _knob_family(gb, gh, 60, rng, noise=0.5)
        val = {t: rng.random(60) < 0.5 for t in ("B", "H")}
        e = efficient_point(base, fam, "B", "H", 0.5, val, n_boot=300, seed=k)
        j = ["base", *fam.settings].index(e["setting"])
        truth = 0.0 if j == 0 else true_u[j - 1]
        lo, hi = e["held_out"]["U"]["ci95"]
        hits += lo <= truth <= hi
    assert 0.90 <= hits / sims <= 0.99


def test_the_papers_laws_along_a_scale_knob():
    """Along an α knob (base at 0): alignment linear in α and helpfulness quadratic are recognized as such;
    β and regularized DPO's λ (base at ∞) along 1/β and 1/λ; a knob that does not start at the base says why."""
    from steertax.analysis.knob_laws import knob_laws

    rng = np.random.default_rng(5)
    n, alphas = 80, [0.25, 0.5, 0.75, 1.0]
    base = {"B": rng.normal(0, 0.2, n), "H": rng.normal(0.6, 0.1, n)}
    sc = {
        "B": np.stack([base["B"] + 0.8 * a + rng.normal(0, 0.02, n) for a in alphas]),
        "H": np.stack([base["H"] - 0.2 * a * a + rng.normal(0, 0.005, n) for a in alphas]),
    }
    from steertax.manifest import ALPHA_KNOB, Knob
    from steertax.training.dpo import BETA_KNOB
    from steertax.training.dpo_reg import LAMBDA_KNOB

    fam = Family("dpo (α)", "α", [f"α={a}" for a in alphas], alphas, sc, spec=ALPHA_KNOB)
    laws = knob_laws(base, fam, {"B": "alignment", "H": "helpfulness"})
    assert laws["fitted"] and laws["B"]["holds"] is True and laws["H"]["holds"] is True
    assert "α = 0" in laws["B"]["verdict"] and "linearly" in laws["B"]["verdict"]
    # β (the base at ∞) is fitted along 1/β: alignment linear in 1/β is recognized, with the knob named so
    betas = [4.0, 2.0, 4 / 3, 1.0]  # 1/β = 0.25, 0.5, 0.75, 1 (the α rows above)
    beta = knob_laws(base, Family("dpo", "β", ["b1", "b2", "b3", "b4"], betas, sc, spec=BETA_KNOB), {"B": "alignment"})
    assert beta["fitted"] and beta["knob"] == "1/β" and beta["B"]["holds"] is True and "1/β = 0" in beta["B"]["verdict"]
    # regularized DPO's λ curve ends at λ = 0 (DPO itself, 1/λ = ∞): that end is left out of the fit
    lam_sc = {"B": np.concatenate([sc["B"], sc["B"][-1:] + 0.5])}
    lam_fam = Family("dpo_reg", "λ", ["l1", "l2", "l3", "l4", "dpo"], [*betas, 0.0], lam_sc, spec=LAMBDA_KNOB)
    lam = knob_laws(base, lam_fam, {"B": "alignment"})
    assert lam["fitted"] and lam["knob"] == "1/λ" and lam["B"]["holds"] is True
    weight = Knob("weight", "w(harmless)", None, None, "a weight curve does not start at the base")
    for knob, vals in ((weight, [1.5, 2.0, 3.0]), (BETA_KNOB, [0.1, 1.0, 10.0])):  # not from the base outwards
        got = knob_laws(base, Family("x", knob.symbol, ["a", "b", "c"], vals, {"B": sc["B"][:3]}, spec=knob), {"B": "alignment"})
        assert not got["fitted"] and "does not start at the base" in got["reason"]


def test_a_level_some_replicates_miss_is_ill_conditioned_and_says_how_many():
    """Killing two mutants (mutmut): the share of replicates that do not reach a level, with one replicate and with
    four, and its printed percentage."""
    from steertax.analysis.decide import _at_level

    fam = Family("f", "α", ["s1", "s2"], [0.5, 1.0], {})
    dH = np.array([[0.0, -0.1, -0.2]] * 5)
    one = _at_level(fam, np.array([[0, 0.5, 1.0], [0, 0.3, 0.6]]), dH[:2], 0.8)
    assert one["status"] == "ill-conditioned" and one["why"] == "100% of replicates do not reach it"
    four = np.array([[0, 0.5, 1.0], [0, 0.3, 0.6], [0, 0.5, 1.0], [0, 0.45, 0.9], [0, 0.55, 1.1]])
    got = _at_level(fam, four, dH, 0.8)
    assert got["status"] == "ill-conditioned" and got["why"] == "25% of replicates do not reach it"
    assert _at_level(fam, four[[0, 2, 3, 4]], dH[:4], 0.8)["status"] == "ok"


def test_a_curve_that_does_not_start_at_the_base_is_interpolated_along_its_own_settings():
    """The flipped fraction f starts at DPO (f = 0), not at the base: a level below its lowest ΔB is not reached on
    it (no segment from the base), and a level between its settings is read on the segment between them."""
    from steertax.manifest import Knob

    base, fams = _two_task_data()
    a = fams[0]
    own = Family("F", "f", a.settings, [0.0, 0.25, 0.5], a.scores, spec=Knob("flip", "f", None, None, "starts at DPO"))
    from_base = Family("F0", "f", a.settings, [0.0, 0.25, 0.5], a.scores)  # the same points, read from the base
    res = decide(base, [own, from_base], ALIGN, HELP, levels=[0.2, 1.0], n_boot=50, seed=1)
    m = {(r["family"], r["level"]): r for r in res["matched"]}
    assert m[("F", 0.2)]["status"] == "not reached" and m[("F0", 0.2)]["status"] == "ok"
    assert m[("F0", 0.2)]["segment"] == ["base", a.settings[0]]
    assert m[("F", 1.0)]["status"] == "ok" and m[("F", 1.0)]["segment"][0] != "base"
    assert m[("F", 1.0)]["estimate"] == pytest.approx(m[("F0", 1.0)]["estimate"])  # the same segment when it is not the first


def test_pair_verdicts_read_the_decisions_over_every_axis():
    from steertax.analysis.decide import pair_verdicts

    def c(a, b, axis, level, diff, decided, status="ok"):
        return {"a": a, "b": b, "axis": axis, "level": level, "diff": diff, "decided": decided, "status": status}

    rows = [
        c("s", "p", "help", 0.5, 0.1, True), c("s", "p", "arc", 0.5, -0.1, False), c("s", "p", "arc", 0.8, 0.02, False),
        c("s", "d", "help", 0.5, 0.1, True), c("s", "d", "arc", 0.5, -0.2, True),
        c("p", "d", "help", 0.5, 0.0, False),
        c("p", "x", "help", 0.5, 0.0, False, status="x: not reached"),
        c("d", "x", "arc", 0.5, -0.3, True),
    ]
    out = {(p["a"], p["b"]): p for p in pair_verdicts(rows)}
    assert out[("s", "p")]["verdict"] == "s cheaper on help; p cheaper on no axis" and out[("s", "p")]["open"] == ["arc"]
    assert out[("s", "d")]["verdict"] == "trade-off: s cheaper on help; d cheaper on arc"
    assert out[("p", "d")]["verdict"] == "can't tell"
    assert out[("p", "x")]["verdict"].startswith("not comparable")
    assert out[("d", "x")]["verdict"] == "x cheaper on arc; d cheaper on no axis"
    assert out[("s", "d")]["a_cheaper"] == {"help": ["ΔB 0.5"]}
