"""The tax statistics with known answers: steertax.analysis.tax (split, interpolation, efficient strength,
tax table) and steertax.analysis.stats (paired change, mean tax, ratio), the bound checks' missing standard
errors, and how a study without r* reports (no tax). Pure numpy and synthetic records: no model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from steertax.analysis.stats import TAX_BASE_FLOOR, mean_tax, paired_change, paired_ratio
from steertax.analysis.tax import R_GRID_POINTS, efficient_strength, interp_mean, law_function, split_items, tax_table
from steertax.analysis.theory import bound_check


def sech2(x: float) -> float:
    return 1.0 / math.cosh(x) ** 2


# --------------------------------------------------------------------------- split_items


def test_split_items_is_deterministic_disjoint_and_covers_all():
    ids = [f"item{i}" for i in range(2000)]
    val, test = split_items(ids, 0.3, seed=0)
    assert (val, test) == split_items(list(reversed(ids)), 0.3, seed=0)  # deterministic, order-free
    assert val.isdisjoint(test) and val | test == set(ids)
    assert abs(len(val) / len(ids) - 0.3) < 0.04  # binomial sd 0.010: four of them
    # each id's side depends on the id alone: a subset splits as the full set does
    sub_val, sub_test = split_items(ids[:100], 0.3, seed=0)
    assert sub_val == val & set(ids[:100]) and sub_test == test & set(ids[:100])
    assert split_items(ids, 0.3, seed=1)[0] != val  # another seed, another split
    assert split_items(ids, 0.0)[0] == set() and split_items(ids, 1.0)[1] == set()


# --------------------------------------------------------------------------- interp_mean


def _rec(item, s, **m):
    return {"item": item, "strength": s, "scorer": m.pop("scorer", "logprob"), **m}


RECS = [
    _rec("a", 0.0, y=0.2),
    _rec("a", 2.0, y=0.6),
    _rec("b", 0.0, y=0.4),
    _rec("b", 2.0, y=1.0),
    _rec("a", 0.0, y=9.0, scorer="generate"),
]


def test_interp_mean_known_values():
    assert interp_mean(RECS, "y", 0.0, "logprob") == pytest.approx(0.3)
    assert interp_mean(RECS, "y", 2.0, "logprob") == pytest.approx(0.8)
    assert interp_mean(RECS, "y", 1.0, "logprob") == pytest.approx(0.55)  # linear between the grid points
    assert interp_mean(RECS, "y", 5.0, "logprob") == pytest.approx(0.8)  # held at the edge, not extrapolated
    assert interp_mean(RECS, "y", 1.0, "logprob", items={"a"}) == pytest.approx(0.4)
    assert interp_mean(RECS, "y", 0.0, "generate") == pytest.approx(9.0)
    assert math.isnan(interp_mean(RECS, "missing", 0.0))
    assert math.isnan(interp_mean(RECS, "y", 0.0, items={"nobody"}))


def test_law_function_is_the_fitted_curve_or_none():
    f = law_function({"ok": True, "law": "tanh", "params": {"a": {"value": 0.5}, "b0": {"value": 0.1}}})
    assert f is not None and f(np.asarray([2.0]))[0] == pytest.approx(math.tanh(1.1))
    assert law_function({"ok": False}) is None and law_function({}) is None


# --------------------------------------------------------------------------- efficient_strength

A = 1.0
C = sech2(1.0) / 2  # U = ½(tanh r − C r²) peaks where sech²r = 2Cr: at r = 1 exactly


def fB(r):
    return np.tanh(A * np.asarray(r, dtype=float))


def fH(r):
    return -C * np.asarray(r, dtype=float) ** 2


RES = 8.0 / (R_GRID_POINTS - 1)  # the grid resolution on (-4, 4)


def test_efficient_strength_finds_the_analytic_optimum():
    e = efficient_strength(fB, fH, (-4.0, 4.0), 0.5)
    assert e["ok"] and abs(e["r_star"] - 1.0) <= RES
    assert e["U_star"] == pytest.approx(0.5 * (math.tanh(1.0) - C), abs=1e-6)
    assert e["dB_star"] == pytest.approx(math.tanh(e["r_star"])) and e["dH_star"] == pytest.approx(-C * e["r_star"] ** 2)
    # with w = ½, U is half the net gain, so the break-even strength (dB/dr = −dH/dr) is r* too
    assert abs(e["break_even"] - 1.0) <= 2 * RES
    assert e["at_boundary"] is False and e["kl_limited"] is False and e["U_star"] >= max(e["curve"]["U"])


def test_efficient_strength_weight_moves_the_optimum():
    # U = 0.8·(−c r²) + 0.2·tanh r peaks where sech²r = 8cr: choose c for r* = 0.5
    c = sech2(0.5) / 4
    e = efficient_strength(fB, lambda r: -c * np.asarray(r) ** 2, (-4.0, 4.0), 0.8)
    assert e["ok"] and abs(e["r_star"] - 0.5) <= RES and e["helpfulness_weight"] == 0.8


def test_efficient_strength_under_a_kl_ceiling():
    e = efficient_strength(fB, fH, (-4.0, 4.0), 0.5, kl=lambda r: np.asarray(r) ** 2, kl_ceiling=0.25)
    # allowed |r| ≤ 0.5 and U rises up to r = 1: the ceiling binds at r = 0.5
    assert e["ok"] and abs(e["r_star"] - 0.5) <= RES and e["r_star"] ** 2 <= 0.25
    assert e["kl_limited"] is True and e["at_boundary"] is False and e["kl_ceiling"] == 0.25


def test_no_strength_under_the_kl_ceiling_is_no_r_star():
    e = efficient_strength(fB, fH, (-4.0, 4.0), 0.5, kl=lambda r: 1.0 + np.asarray(r) ** 2, kl_ceiling=0.5)
    assert e["ok"] is False and e["reason"] == "no strength keeps drift KL under the ceiling 0.5"
    assert "r_star" not in e and "U_star" not in e  # not the grid minimum, silently
    nan_kl = efficient_strength(fB, fH, (-4.0, 4.0), 0.5, kl=lambda r: np.full(np.shape(r), np.nan), kl_ceiling=0.5)
    assert nan_kl["ok"] is False and "r_star" not in nan_kl  # no drift measured: nowhere known to be under it


def test_efficient_strength_at_the_edge_of_the_range():
    e = efficient_strength(fB, fH, (-0.5, 0.5), 0.5)  # the optimum r = 1 lies outside
    assert e["ok"] and e["r_star"] == 0.5 and e["at_boundary"] is True
    lo = efficient_strength(lambda r: -fB(r), fH, (-0.5, 0.5), 0.5)  # mirrored: r* = −1, outside on the left
    assert lo["r_star"] == -0.5 and lo["at_boundary"] is True


def test_flat_utility_picks_the_strength_nearest_zero():
    flat = lambda r: np.zeros(np.shape(r))  # noqa: E731  (laws that do not move: every strength ties)
    e = efficient_strength(flat, flat, (-2.0, 4.0), 0.5)  # 0 is not on linspace(-2, 4, 4001): added
    assert e["ok"] and e["r_star"] == 0.0 and e["at_boundary"] is False and "flat" in e["note"]
    assert efficient_strength(fB, fH, (-4.0, 4.0), 0.5)["note"] is None  # one maximum: no note


# --------------------------------------------------------------------------- tax_table


def _task_recs(base_by_item, at_by_item, metric, r=2.0, **extra):
    out = []
    for it, v in base_by_item.items():
        out.append({"item": it, "strength": 0.0, "scorer": "logprob", metric: v, **extra})
        out.append({"item": it, "strength": r, "scorer": "logprob", metric: at_by_item[it], **extra})
    return out


def test_tax_table_known_values_held_out_items_and_floor():
    ents = {
        "arc": {"axis": "helpfulness", "metric": "p_correct", "scorer": "logprob"},
        "refusal": {"axis": "alignment", "metric": "B", "scorer": "logprob"},
        "drift": {"axis": "helpfulness", "metric": "kl", "scorer": "logprob"},
        "tiny": {"axis": "helpfulness", "metric": "acc", "scorer": "logprob"},
    }
    recs = {
        # held-out items v1, v2: base 0.5 → 0.4 (tax 20 %); the validation item v0 would change it
        "arc": _task_recs({"v0": 0.9, "v1": 0.5, "v2": 0.5}, {"v0": 0.0, "v1": 0.4, "v2": 0.4}, "p_correct"),
        "refusal": _task_recs({"v0": -0.5, "v1": -0.5}, {"v0": 0.5, "v1": 0.5}, "B"),
        "drift": _task_recs({"d0": 0.0}, {"d0": 0.3}, "kl"),
        "tiny": _task_recs({"t0": 0.02, "t1": 0.02}, {"t0": 0.01, "t1": 0.01}, "acc"),  # base under the floor
    }
    rows = {r["task"]: r for r in tax_table(ents, recs, 2.0, items={"v1", "v2"}, chosen_on={"arc", "refusal"})}
    arc = rows["arc"]
    assert arc["items"] == "held-out" and arc["n"] == 2
    assert arc["base"] == pytest.approx(0.5) and arc["at_r_star"] == pytest.approx(0.4) and arc["tax_percent"] == pytest.approx(20.0)
    ref = rows["refusal"]
    assert ref["items"] == "held-out" and ref["n"] == 1 and ref["tax_percent"] is None and ref["at_r_star"] == pytest.approx(0.5)
    assert rows["drift"]["tax_percent"] is None and rows["drift"]["at_r_star"] == pytest.approx(0.3)  # drift: no %
    assert rows["drift"]["items"] == "all" and rows["drift"]["n"] == 1  # never used to choose r*: all its items
    tiny = rows["tiny"]
    assert TAX_BASE_FLOOR > 0.02 and tiny["tax_percent"] is None and "below the floor" in tiny["tax_note"]
    assert tiny["base"] == pytest.approx(0.02) and tiny["at_r_star"] == pytest.approx(0.01)  # the change stays reported
    # no items given: every row on all items; the validation item now counts
    allrows = {r["task"]: r for r in tax_table(ents, recs, 2.0)}
    assert allrows["arc"]["items"] == "all" and allrows["arc"]["n"] == 3
    assert allrows["arc"]["tax_percent"] == pytest.approx((19 / 30 - 0.8 / 3) / (19 / 30) * 100)
    # the tax at r* has an interval: items resampled, each item's score at r* interpolated along its strengths
    from steertax.analysis.stats import paired_change
    from steertax.analysis.tax import interp_items

    at = interp_items(recs["arc"], "p_correct", 2.0, "logprob")
    assert set(at) == {"v0", "v1", "v2"} and sum(at.values()) / 3 == pytest.approx(0.8 / 3)
    ci = paired_change(interp_items(recs["arc"], "p_correct", 0.0, "logprob"), at)["tax_ci95"]
    assert allrows["arc"]["tax_ci95"] == ci and ci[0] <= allrows["arc"]["tax_percent"] <= ci[1]
    assert "tax_ci95" not in allrows["drift"] and "tax_ci95" not in allrows["tiny"]
    # items without chosen_on: applied to every entry
    assert all(r["items"] == "held-out" for r in tax_table(ents, recs, 2.0, items={"v1"}))


def test_tax_table_over_refusal_rows_carry_both_rates():
    recs = [
        {"item": "s", "strength": 0.0, "scorer": "generate", "helpful": 1.0, "harmless": None},
        {"item": "s", "strength": 1.0, "scorer": "generate", "helpful": 0.0, "harmless": None},
        {"item": "u", "strength": 0.0, "scorer": "generate", "helpful": None, "harmless": 0.0},
        {"item": "u", "strength": 1.0, "scorer": "generate", "helpful": None, "harmless": 1.0},
    ]
    ents = {"over_refusal[generate]": {"axis": "helpfulness", "metric": "helpful", "scorer": "generate"}}
    (row,) = tax_table(ents, {"over_refusal[generate]": recs}, 1.0)
    assert row["scorer"] == "generate" and row["tax_percent"] == pytest.approx(100.0)
    assert row["helpful_rate_safe"] == {"base": 1.0, "at_r_star": 0.0}
    assert row["harmless_rate_unsafe"] == {"base": 0.0, "at_r_star": 1.0}


# --------------------------------------------------------------------------- paired_change


def test_paired_change_known_delta_and_tax():
    base = {f"i{k}": 0.5 for k in range(10)}
    other = {f"i{k}": 0.4 for k in range(10)}
    other["extra"] = 0.0  # not in the base: not paired, not counted
    ch = paired_change(base, other, n_boot=200)
    assert ch["n"] == 10 and ch["delta"] == pytest.approx(-0.1) and ch["tax_percent"] == pytest.approx(20.0)
    assert ch["delta_ci95"] == pytest.approx([-0.1, -0.1]) and ch["tax_ci95"] == pytest.approx([20.0, 20.0])
    assert ch["n_boot_below_floor"] == 0 and ch["tax_note"] is None
    assert paired_change(base, {k: 0.6 for k in base})["tax_percent"] == pytest.approx(-20.0)  # negative = improvement
    empty = paired_change(base, {"x": 1.0})
    assert empty["n"] == 0 and empty["delta"] is None and empty["tax_percent"] is None


def test_paired_change_ci_is_the_percentile_of_the_same_resamples():
    rng = np.random.default_rng(3)
    b = rng.uniform(0.4, 0.9, 30)
    o = b - rng.uniform(0.0, 0.2, 30)
    ids = [f"q{k:02d}" for k in range(30)]  # sorted order = array order
    ch = paired_change(dict(zip(ids, b, strict=True)), dict(zip(ids, o, strict=True)), n_boot=300, seed=7)
    idx = np.random.default_rng(7).integers(0, 30, size=(300, 30))
    bb, ob = b[idx].mean(axis=1), o[idx].mean(axis=1)
    assert ch["delta_ci95"] == pytest.approx(list(np.percentile(ob - bb, [2.5, 97.5])))
    assert ch["tax_ci95"] == pytest.approx(list(np.percentile((bb - ob) / bb * 100, [2.5, 97.5])))
    assert ch["tax_ci95"][0] <= ch["tax_percent"] <= ch["tax_ci95"][1]


def test_paired_change_near_zero_base_reports_no_percent():
    base = {"a": 0.01, "b": 0.03, "c": 0.02}  # mean 0.02 < the floor
    other = {"a": 0.03, "b": 0.05, "c": 0.04}
    ch = paired_change(base, other, n_boot=100)
    assert ch["tax_percent"] is None and ch["tax_ci95"] is None and "below the floor" in ch["tax_note"]
    assert ch["delta"] == pytest.approx(0.02) and ch["delta_ci95"] == pytest.approx([0.02, 0.02])  # the absolute change stands
    neg = paired_change({"a": -0.01}, {"a": 0.5}, n_boot=0)  # |base| is what the floor looks at
    assert neg["tax_percent"] is None
    at_floor = paired_change({"a": TAX_BASE_FLOOR, "b": TAX_BASE_FLOOR}, {"a": 0.0, "b": 0.0}, n_boot=50)
    assert at_floor["tax_percent"] == pytest.approx(100.0)


def test_paired_change_never_drops_resamples_silently():
    base = {"a": 1.0, "b": 0.5, "c": 0.5, "d": 0.0}  # a resample of only d (1 in 256) has base mean 0
    worse = {"a": 0.5, "b": 0.5, "c": 0.0, "d": 0.0}
    ch = paired_change(base, worse, n_boot=2000, seed=0)
    idx = np.random.default_rng(0).integers(0, 4, size=(2000, 4))
    b, o = np.asarray([1.0, 0.5, 0.5, 0.0]), np.asarray([0.5, 0.5, 0.0, 0.0])
    bb, ob = b[idx].mean(axis=1), o[idx].mean(axis=1)
    below = np.abs(bb) < TAX_BASE_FLOOR
    k = int(below.sum())
    assert 0 < k < 0.025 * 2000 and ch["n_boot_below_floor"] == k and ch["n_boot"] == 2000 and f"{k} of 2000" in ch["tax_note"]
    # kept, as unknowns below every value for the 2.5 % point and above every value for the 97.5 % point
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (bb - ob) / bb * 100
    lo = np.percentile(np.where(below, -np.inf, t), 2.5)
    hi = np.percentile(np.where(below, np.inf, t), 97.5)
    assert np.isfinite([lo, hi]).all() and ch["tax_ci95"] == pytest.approx([lo, hi])
    dropped = np.percentile(t[~below], [2.5, 97.5])  # what dropping them silently gave: a narrower interval
    assert ch["tax_ci95"][0] <= dropped[0] and ch["tax_ci95"][1] >= dropped[1]
    assert ch["tax_percent"] == pytest.approx(50.0) and ch["delta_ci95"] is not None
    # a quarter of the resamples below the floor: too many to put beyond the ends, so no tax CI
    two = paired_change({"a": 1.0, "d": 0.0}, {"a": 0.5, "d": 0.0}, n_boot=400, seed=0)
    assert two["tax_percent"] == pytest.approx(50.0) and two["tax_ci95"] is None and two["n_boot_below_floor"] > 10
    assert "no CI for the tax %" in two["tax_note"] and two["delta_ci95"] is not None


# --------------------------------------------------------------------------- mean_tax


def test_mean_tax_known_value_and_what_it_averages():
    ids = [f"i{k}" for k in range(8)]
    pairs = {
        "A": ({i: 0.5 for i in ids}, {i: 0.4 for i in ids}),  # 20 %
        "B": ({i: 0.8 for i in ids}, {i: 0.8 for i in ids}),  # 0 %
        "C": ({i: 0.01 for i in ids}, {i: 0.0 for i in ids}),  # 100 % of a near-zero base: not averaged
        "D": ({}, {}),
    }
    m = mean_tax(pairs, n_boot=100)
    assert m["mean_tax_percent"] == pytest.approx(10.0) and m["mean_tax_ci95"] == pytest.approx([10.0, 10.0])
    assert m["mean_tax_over"] == ["A", "B"] and set(m["mean_tax_excluded"]) == {"C", "D"}
    assert "floor" in m["mean_tax_excluded"]["C"]
    none = mean_tax({"C": pairs["C"]})
    assert none["mean_tax_percent"] is None and none["mean_tax_ci95"] is None and none["mean_tax_note"]


def test_mean_tax_uses_each_benchmarks_own_resamples():
    rng = np.random.default_rng(5)

    def bench(n, lo, hi):
        b = rng.uniform(lo, hi, n)
        o = b - rng.uniform(0, 0.2, n)
        ids = [f"x{k:03d}" for k in range(n)]
        return dict(zip(ids, b, strict=True)), dict(zip(ids, o, strict=True)), b, o

    b1, o1, B1, O1 = bench(20, 0.4, 0.9)
    b2, o2, B2, O2 = bench(35, 0.5, 0.7)
    one = mean_tax({"A": (b1, o1)}, n_boot=400, seed=2)
    assert one["mean_tax_ci95"] == pytest.approx(paired_change(b1, o1, n_boot=400, seed=2)["tax_ci95"])  # one benchmark: its own CI
    two = mean_tax({"A": (b1, o1), "B": (b2, o2)}, n_boot=400, seed=2)

    def reps(b, o, rng):
        idx = rng.integers(0, len(b), size=(400, len(b)))
        bb, ob = b[idx].mean(axis=1), o[idx].mean(axis=1)
        return (bb - ob) / bb * 100

    t1 = (B1.mean() - O1.mean()) / B1.mean() * 100
    t2 = (B2.mean() - O2.mean()) / B2.mean() * 100
    assert two["mean_tax_percent"] == pytest.approx((t1 + t2) / 2)
    both = (reps(B1, O1, np.random.default_rng(2)) + reps(B2, O2, np.random.default_rng([2, 1]))) / 2
    assert two["mean_tax_ci95"] == pytest.approx(list(np.percentile(both, [2.5, 97.5])))
    # benchmarks are resampled independently, also when they have as many items: two copies of one benchmark
    # average to a narrower interval than the one (the same resamples would give the same interval)
    same = mean_tax({"A": (b1, o1), "A2": (b1, o1)}, n_boot=400, seed=2)
    w1, w2 = np.diff(one["mean_tax_ci95"])[0], np.diff(same["mean_tax_ci95"])[0]
    assert w2 < 0.85 * w1


def test_mean_tax_keeps_resamples_below_the_floor_as_unknowns():
    base = {"a": 1.0, "b": 0.5, "c": 0.5, "d": 0.0}
    worse = {"a": 0.5, "b": 0.5, "c": 0.0, "d": 0.0}
    one = mean_tax({"A": (base, worse)}, n_boot=2000, seed=0)
    ch = paired_change(base, worse, n_boot=2000, seed=0)
    assert one["mean_tax_ci95"] == pytest.approx(ch["tax_ci95"]) and one["n_boot_below_floor"] == ch["n_boot_below_floor"] > 0
    assert "kept as unknowns" in one["mean_tax_note"]
    many = mean_tax({"A": ({"a": 1.0, "d": 0.0}, {"a": 0.5, "d": 0.0})}, n_boot=400)
    assert many["mean_tax_percent"] == pytest.approx(50.0) and many["mean_tax_ci95"] is None and "no CI" in many["mean_tax_note"]


# --------------------------------------------------------------------------- paired_ratio


def test_paired_ratio_known_value():
    ids = [f"i{k}" for k in range(12)]
    base = {i: 0.0 for i in ids}
    a = {i: 0.4 for i in ids}  # unconditional: +0.4 on every item
    b = {i: 0.1 for i in ids}  # conditional: +0.1
    pr = paired_ratio(base, a, b, n_boot=200)
    assert pr["ratio"] == pytest.approx(0.25) and pr["ratio_ci95"] == pytest.approx([0.25, 0.25]) and pr["reason"] is None
    assert pr["n"] == 12 and pr["denominator_ci95"] == pytest.approx([0.4, 0.4])


def test_paired_ratio_ci_from_the_same_resamples():
    rng = np.random.default_rng(11)
    n = 40
    x0 = rng.uniform(0, 0.5, n)
    xa = x0 + rng.uniform(0.2, 0.6, n)
    xb = x0 + rng.uniform(0.0, 0.3, n)
    ids = [f"k{j:02d}" for j in range(n)]
    d = lambda x: dict(zip(ids, x, strict=True))  # noqa: E731
    pr = paired_ratio(d(x0), d(xa), d(xb), n_boot=500, seed=4)
    idx = np.random.default_rng(4).integers(0, n, size=(500, n))
    m0 = x0[idx].mean(axis=1)
    r = (xb[idx].mean(axis=1) - m0) / (xa[idx].mean(axis=1) - m0)
    assert pr["ratio"] == pytest.approx((xb.mean() - x0.mean()) / (xa.mean() - x0.mean()))
    assert pr["ratio_ci95"] == pytest.approx(list(np.percentile(r, [2.5, 97.5])))
    assert pr["ratio_ci95"][0] <= pr["ratio"] <= pr["ratio_ci95"][1] and pr["n_boot_undefined"] == 0


def test_paired_ratio_is_undefined_when_the_denominator_may_be_zero():
    ids = [f"i{k}" for k in range(20)]
    base = {i: 0.5 for i in ids}
    a = {i: 0.5 + (0.1 if k % 2 else -0.1) for k, i in enumerate(ids)}  # mean change 0, CI across 0
    b = {i: 0.6 for i in ids}
    pr = paired_ratio(base, a, b, n_boot=300)
    assert pr["ratio"] is None and pr["ratio_ci95"] is None and "includes 0" in pr["reason"]
    assert pr["denominator_ci95"][0] <= 0 <= pr["denominator_ci95"][1]
    nob = paired_ratio(base, {i: 0.9 for i in ids}, b, n_boot=0)
    assert nob["ratio"] is None and "no bootstrap" in nob["reason"]


# --------------------------------------------------------------------------- bound checks: a missing SE


def test_bound_check_missing_stderr_is_a_missing_check():
    r = np.asarray([0.0, 1.0, 2.0])
    bound = np.asarray([0.5, 0.4, 0.3])  # upper bound
    # r = 2 lies above the bound and has no SE: cannot tell (it used to count as a zero-width CI: a violation)
    c = bound_check(r, [0.5, 0.35, 0.31], [0.01, 0.01, None], bound, "upper")
    assert c["holds"] is None and c["reason"] == "no standard error" and c["n_unchecked"] == 1 and c["unchecked_at_r"] == [2.0]
    assert c["n_violations"] == 0
    # a mean on the right side needs no CI: respected whatever its SE
    ok = bound_check(r, [0.5, 0.35, 0.2], [None, None, float("nan")], bound, "upper")
    assert ok["holds"] is True and ok["n_unchecked"] == 0
    # a real violation elsewhere still makes it fail
    bad = bound_check(r, [0.5, 0.6, 0.31], [0.01, 0.01, None], bound, "upper")
    assert bad["holds"] is False and bad["n_violations"] == 1 and bad["at_r"] == 1.0


def test_study_bound_verdict_says_cant_tell_without_stderr():
    from types import SimpleNamespace

    from steertax.runners.study_summary import _bound_checks

    bs = [{"strength": s, "mean": m, "stderr": None} for s, m in ((0.0, 0.5), (1.0, 0.9), (2.0, 0.95))]
    tasks_out = {"arc": {"axis": "helpfulness", "metric": "p_correct", "by_strength": bs, "fit": {}}}
    st = SimpleNamespace(alignment_task="refusal", helpfulness_task="arc")
    chk = _bound_checks(tasks_out, {"sigma": 1.0}, st)["arc"]
    assert chk["holds"] is None and chk["verdict"].startswith("can't tell: no standard error")


# --------------------------------------------------------------------------- a study without r*: no tax


def _study_entries(grid, law_ok=True):
    from steertax import tasks as T

    rng = np.random.default_rng(0)

    def recs(f, metric, key, n=40):
        strengths = grid if law_ok else [0.0]
        return [
            {"task": key, "item": f"{key}{i}", "strength": s, "scorer": "logprob", metric: float(f(s) + off)}
            for i in range(n)
            for off in [rng.normal(0, 0.02)]
            for s in strengths
        ]

    def ent(name, metric, axis, records):
        return {
            "task": name,
            "name": name,
            "axis": axis,
            "metric": metric,
            "scorer": "logprob",
            "records": records,
            "task_obj": T.get(name),
        }

    return {
        "refusal": ent("refusal", "B", "alignment", recs(lambda r: np.tanh(0.5 * r), "B", "r")),
        "arc_easy": ent("arc_easy", "p_correct", "helpfulness", recs(lambda r: 0.6 / (1 + 0.05 * r * r), "p_correct", "a")),
        "mmlu": ent("mmlu", "p_abcd", "helpfulness", recs(lambda r: 0.5 - 0.01 * r * r, "p_abcd", "m")),
    }


@pytest.fixture(scope="module")
def study_cfg():
    from steertax.config import from_dict

    return from_dict(
        {
            "model": "smollm2",
            "tasks": [{"name": "refusal"}, {"name": "arc_easy"}, {"name": "mmlu"}],
            "study": {"alignment_task": "refusal", "helpfulness_task": "arc_easy", "n_boot": 0},
        }
    )


GRID = [-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0]


def test_study_tax_table_uses_the_held_out_items(study_cfg):
    from steertax.runners.study_summary import _efficient, _study_split, _tax

    ents = _study_entries(GRID)
    eff = _efficient(study_cfg, ents, GRID)
    assert eff["ok"] and eff["n_validation_items"] + eff["n_test_items"] == 80
    val, test, chosen_on = _study_split(study_cfg, ents)
    assert chosen_on == {"refusal", "arc_easy"}
    rows = {r["task"]: r for r in _tax(study_cfg, ents, eff["r_star"])}
    n_test = {k: len({str(x["item"]) for x in ents[k]["records"]} & test) for k in ("refusal", "arc_easy")}
    for k in ("refusal", "arc_easy"):
        assert rows[k]["items"] == "held-out" and rows[k]["n"] == n_test[k]
        assert rows[k]["base"] == pytest.approx(interp_mean(ents[k]["records"], ents[k]["metric"], 0.0, items=test))
    assert rows["mmlu"]["items"] == "all" and rows["mmlu"]["n"] == 40
    assert eff["heldout"]["dH"] == pytest.approx(rows["arc_easy"]["at_r_star"] - rows["arc_easy"]["base"])


def test_no_law_fits_means_no_r_star_and_no_tax(study_cfg):
    from steertax.runners.study_summary import _efficient, _tax

    ents = _study_entries(GRID, law_ok=False)  # one strength only: no law can be fitted
    eff = _efficient(study_cfg, ents, GRID)
    assert eff["ok"] is False and eff["reason"] == "no law fits, r* not chosen" and "r_star" not in eff
    assert _tax(study_cfg, ents, None) is None


def test_report_says_held_out_items_and_prints_no_tax_without_r_star(study_cfg, tmp_path):
    from steertax._util import sanitize_json as _sanitize
    from steertax.reports.study import write_report
    from steertax.runners.study_summary import _efficient, _tax

    def summary(ents):
        eff = _efficient(study_cfg, ents, GRID)
        tax = _tax(study_cfg, ents, eff["r_star"] if eff["ok"] else None)
        tasks = {
            n: {
                "axis": e["axis"],
                "metric": e["metric"],
                "by_strength": [
                    {"strength": s, "mean": interp_mean(e["records"], e["metric"], s), "stderr": 0.01, "delta_stderr": 0.01}
                    for s in sorted({x["strength"] for x in e["records"]})
                ],
                "fit": {},
            }
            for n, e in ents.items()
        }
        s = {"run_id": "t", "model": "m", "vector": {"method": "mean_diff", "layers": [1], "aligned_pole": "refuse"},
             "strengths": GRID, "strength_grid": {"how": "explicit"}, "tasks": tasks, "efficient_strength": eff,
             "alignment_tax": tax, "theory": {}, "warnings": []}  # fmt: skip
        return _sanitize(s)

    ok = tmp_path / "ok"
    ok.mkdir()
    html = write_report(ok, summary(_study_entries(GRID)), {"config": {}}).read_text()
    assert "Alignment tax at r* =" in html and "held-out items (" in html and "all items (40)" in html
    bad = tmp_path / "bad"
    bad.mkdir()
    html = write_report(bad, summary(_study_entries(GRID, law_ok=False)), {"config": {}}).read_text()
    assert "no law fits, r* not chosen" in html and "Alignment tax at r*" not in html
    assert "no alignment tax is reported" in html


def test_cli_tax_and_fit_print_the_reason_instead_of_a_table(monkeypatch, capsys, tmp_path):
    import steertax.runners.study_summary as study
    from steertax.cli import main

    eff = {"ok": False, "reason": "no law fits, r* not chosen", "detail": "no law could be fitted to refusal on the validation split"}
    summ = {"tasks": {}, "theory": {}, "efficient_strength": eff, "alignment_tax": None}
    monkeypatch.setattr(study, "analyze", lambda d: summ)
    assert main(["tax", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no law fits, r* not chosen" in out and "no alignment tax" in out and "tax %" not in out
    assert main(["fit", str(tmp_path)]) == 0
    assert "efficient strength: no law fits, r* not chosen" in capsys.readouterr().out
    row = {"task": "arc", "axis": "helpfulness", "metric": "p_correct", "items": "held-out", "n": 7, "base": 0.02, "at_r_star": 0.01}
    row.update(tax_percent=None, tax_note="base 0.02 is below the floor 0.05")
    summ.update(efficient_strength={"ok": True, "r_star": 1.5}, alignment_tax=[row])
    assert main(["tax", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "held-out" in out and "below the floor" in out and "r* = 1.5" in out


def test_tax_markdown_names_what_the_mean_averages():
    from steertax.reports.tax import tax_markdown

    ids = [f"i{k}" for k in range(6)]
    pairs = {"mmlu": ({i: 0.5 for i in ids}, {i: 0.45 for i in ids}), "gsm8k": ({i: 0.02 for i in ids}, {i: 0.0 for i in ids})}
    bench = {
        "mmlu": {**paired_change(*pairs["mmlu"], n_boot=50), "metric": "p_abcd", "axis": "helpfulness"},
        "gsm8k": {**paired_change(*pairs["gsm8k"], n_boot=50), "metric": "acc", "axis": "helpfulness"},
        "bbq": {**paired_change({i: 0.5 for i in ids}, {i: 0.6 for i in ids}), "metric": "acc", "axis": "alignment"},
    }
    bench["bbq"].update(tax_percent=None, tax_ci95=None)
    mt = mean_tax(pairs, n_boot=50)
    mt["mean_tax_excluded"]["bbq"] = "alignment benchmark (not a helpfulness tax)"
    rate = paired_change({"s": 1.0, "t": 1.0}, {"s": 1.0, "t": 0.0})
    res = {"base": "B", "aligned": "A", "benchmarks": bench, **mt, "helpful_rate": rate, "harmless_rate": rate}
    md = tax_markdown(res)
    assert mt["mean_tax_over"] == ["mmlu"] and mt["mean_tax_percent"] == pytest.approx(10.0)
    assert "Mean tax over mmlu: 10.0 % [10.0, 10.0]" in md
    assert "gsm8k (base mean 0.02 below the floor 0.05 (no tax %))" in md and "bbq (alignment benchmark" in md
    assert "- gsm8k: base mean 0.02 is below the floor" in md
    assert "safe prompts answered (greedy, judged)" in md and "unsafe prompts refused (greedy, judged)" in md


def test_safe_prompt_rates_have_one_name_per_metric():
    from steertax.reports.merge import _axes_3h

    def labels(scorer):
        s = {"entries": [{"name": "refusal", "scorer": "logprob"}, {"name": "over_refusal", "scorer": scorer}]}
        return dict(_axes_3h(s))["over_refusal"]

    assert labels("logprob") == "helpful: safe prompts answered (P(answer) > P(refuse))"
    assert labels("generate") == "helpful: safe prompts answered (greedy, judged)"


# --------------------------------------------------------------------------- pinned edges
# (added to kill the mutants of a mutation run that changed a reported number and no test above noticed)


def _ids(n, p="i"):
    return [f"{p}{k:02d}" for k in range(n)]


def test_paired_change_drops_non_finite_items_and_keeps_its_keys():
    base = {"a": 0.5, "b": 0.7, "c": float("nan"), "d": 0.6}
    other = {"a": 0.4, "b": 0.5, "c": 0.1, "d": float("inf")}
    ch = paired_change(base, other, n_boot=100)
    assert ch["n"] == 2 and ch["base"] == pytest.approx(0.6) and ch["value"] == pytest.approx(0.45)
    assert ch["delta"] == pytest.approx(-0.15) and ch["tax_percent"] == pytest.approx(25.0)
    assert math.isfinite(ch["delta_ci95"][0]) and math.isfinite(ch["tax_ci95"][1])
    empty = paired_change(base, {"x": 1.0}, n_boot=7)
    assert set(empty) == set(ch) and empty["n_boot"] == 7 and empty["n_boot_below_floor"] is None
    assert all(empty[k] is None for k in ("base", "value", "delta", "delta_ci95", "tax_percent", "tax_ci95"))


def test_paired_change_one_and_two_items():
    one = paired_change({"a": 0.5}, {"a": 0.4}, n_boot=50)
    assert one["delta"] == pytest.approx(-0.1) and one["delta_ci95"] is None  # one item: no interval
    assert one["tax_percent"] == pytest.approx(20.0) and one["tax_ci95"] is None and "no bootstrap" in one["tax_note"]
    assert one["n_boot_below_floor"] is None
    two = paired_change({"a": 0.5, "b": 0.7}, {"a": 0.4, "b": 0.7}, n_boot=200, seed=1)
    idx = np.random.default_rng(1).integers(0, 2, size=(200, 2))
    b, o = np.asarray([0.5, 0.7]), np.asarray([0.4, 0.7])
    bb, ob = b[idx].mean(axis=1), o[idx].mean(axis=1)
    assert two["delta_ci95"] == pytest.approx(list(np.percentile(ob - bb, [2.5, 97.5])))
    assert two["tax_ci95"] == pytest.approx(list(np.percentile((bb - ob) / bb * 100, [2.5, 97.5])))
    assert two["n_boot_below_floor"] == 0
    nob = paired_change({"a": 0.5, "b": 0.7}, {"a": 0.4, "b": 0.7}, n_boot=0)
    assert nob["delta_ci95"] is None and nob["tax_ci95"] is None and nob["tax_percent"] == pytest.approx(100 * 0.1 / 1.2)


def test_paired_change_resamples_at_the_floor_have_a_tax():
    at = paired_change({"a": TAX_BASE_FLOOR, "b": TAX_BASE_FLOOR}, {"a": 0.0, "b": 0.0}, n_boot=50)
    assert at["tax_ci95"] == pytest.approx([100.0, 100.0]) and at["n_boot_below_floor"] == 0 and at["tax_note"] is None
    assert TAX_BASE_FLOOR == 0.05


def test_paired_change_defaults_are_1000_resamples_seed_0():
    rng = np.random.default_rng(4)
    b = rng.uniform(0.3, 0.9, 15)
    ids = _ids(15)
    base, other = dict(zip(ids, b, strict=True)), dict(zip(ids, b - rng.uniform(0, 0.2, 15), strict=True))
    d = paired_change(base, other)
    assert d["n_boot"] == 1000 and d == paired_change(base, other, n_boot=1000, seed=0, floor=TAX_BASE_FLOOR)
    m = mean_tax({"A": (base, other)})
    assert m["mean_tax_ci95"] == pytest.approx(d["tax_ci95"]) and m["n_boot_below_floor"] == 0
    assert mean_tax({"A": (base, other)}, n_boot=1000, seed=0) == m
    r = paired_ratio(base, other, {k: v + 0.01 for k, v in other.items()})
    assert r == paired_ratio(base, other, {k: v + 0.01 for k, v in other.items()}, n_boot=1000, seed=0)


def test_mean_tax_small_benchmarks_and_no_bootstrap():
    ids = _ids(6)
    A = ({i: 0.5 for i in ids}, {i: 0.4 for i in ids})  # 20 %
    one = ({"x": 0.5}, {"x": 0.25})  # one item: averaged, but no bootstrap
    m = mean_tax({"one": one, "A": A, "uno": one}, n_boot=50)
    assert m["mean_tax_over"] == ["one", "A", "uno"] and m["mean_tax_percent"] == pytest.approx(40.0)
    assert m["mean_tax_ci95"] is None and m["n_boot_below_floor"] is None
    assert m["mean_tax_note"] == (
        "no CI for the mean tax: one: no bootstrap (n_boot = 0 or one item); uno: no bootstrap (n_boot = 0 or one item)"
    )
    two = mean_tax({"A": A, "two": ({"x": 0.5, "y": 0.5}, {"x": 0.25, "y": 0.25})}, n_boot=50)
    assert two["mean_tax_ci95"] == pytest.approx([35.0, 35.0]) and two["n_boot_below_floor"] == 0 and two["mean_tax_note"] is None
    nob = mean_tax({"A": A}, n_boot=0)
    assert nob["mean_tax_percent"] == pytest.approx(20.0) and nob["mean_tax_ci95"] is None and nob["n_boot_below_floor"] is None
    at = mean_tax({"F": ({"a": TAX_BASE_FLOOR, "b": TAX_BASE_FLOOR}, {"a": 0.0, "b": 0.0})}, n_boot=20)
    assert at["mean_tax_over"] == ["F"] and at["mean_tax_ci95"] == pytest.approx([100.0, 100.0])  # at the floor: averaged
    nan = mean_tax({"N": ({"a": float("nan"), "b": 0.5}, {"a": 0.1, "b": 0.25})}, n_boot=20)
    assert nan["mean_tax_percent"] == pytest.approx(50.0)  # the NaN item is not paired
    empty = mean_tax({"E": ({"a": 0.5}, {"b": 0.5})})
    assert empty["mean_tax_over"] == [] and empty["mean_tax_excluded"] == {"E": "no item has both scores"}
    assert empty["n_boot_below_floor"] is None and empty["mean_tax_percent"] is None
    after = mean_tax({"E": ({"a": 0.5}, {"b": 0.5}), "A": A}, n_boot=20)  # an empty benchmark does not end the list
    assert after["mean_tax_over"] == ["A"] and after["mean_tax_percent"] == pytest.approx(20.0)


def test_mean_tax_unknowns_from_two_benchmarks_combine():
    # each benchmark has its own resamples below the floor; a resample is unknown when either one is
    base = {"a": 1.0, "b": 0.5, "c": 0.5, "d": 0.0}
    worse = {"a": 0.5, "b": 0.5, "c": 0.0, "d": 0.0}
    ids = _ids(8)
    steady = ({i: 0.5 for i in ids}, {i: 0.4 for i in ids})
    two = mean_tax({"A": (base, worse), "S": steady}, n_boot=2000, seed=0)
    one = paired_change(base, worse, n_boot=2000, seed=0)
    assert two["n_boot_below_floor"] == one["n_boot_below_floor"] > 0
    idx = np.random.default_rng(0).integers(0, 4, size=(2000, 4))
    b, o = np.asarray([1.0, 0.5, 0.5, 0.0]), np.asarray([0.5, 0.5, 0.0, 0.0])
    bb, ob = b[idx].mean(axis=1), o[idx].mean(axis=1)
    below = np.abs(bb) < TAX_BASE_FLOOR
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ((bb - ob) / bb * 100 + 20.0) / 2
    lo = np.percentile(np.where(below, -np.inf, t), 2.5)
    hi = np.percentile(np.where(below, np.inf, t), 97.5)
    assert two["mean_tax_ci95"] == pytest.approx([lo, hi])
    k = two["n_boot_below_floor"]
    assert two["mean_tax_note"] == (
        f"{k} of 2000 resamples have a benchmark's base mean below the floor 0.05 (no tax % there): "
        "kept as unknowns beyond either end of the CI, which is conservative"
    )
    many = mean_tax({"S": steady, "A": ({"a": 1.0, "d": 0.0}, {"a": 0.5, "d": 0.0})}, n_boot=400)
    k = many["n_boot_below_floor"]
    assert many["mean_tax_ci95"] is None and k > 10
    assert many["mean_tax_note"] == (
        f"no CI for the mean tax: {k} of 400 resamples have a benchmark's base mean below the floor 0.05 (no tax % there), "
        "too many to place beyond the CI's ends"
    )


def test_paired_ratio_drops_non_finite_items_and_small_samples():
    ids = _ids(10)
    base = {i: 0.0 for i in ids}
    a = {i: 0.4 for i in ids}
    b = {i: 0.1 for i in ids}
    base["i00"], a["i01"], b["i02"] = float("nan"), float("inf"), float("nan")
    pr = paired_ratio(base, a, b, n_boot=50)
    assert pr["n"] == 7 and pr["ratio"] == pytest.approx(0.25) and pr["ratio_ci95"] == pytest.approx([0.25, 0.25])
    assert pr["n_boot_undefined"] == 0 and pr["reason"] is None
    one = paired_ratio({"x": 0.0}, {"x": 0.4}, {"x": 0.1}, n_boot=50)
    assert one["n"] == 1 and one["ratio"] is None and one["reason"].startswith("no bootstrap") and one["denominator_ci95"] is None
    two = paired_ratio({"x": 0.0, "y": 0.0}, {"x": 0.4, "y": 0.4}, {"x": 0.1, "y": 0.1}, n_boot=50)
    assert two["ratio"] == pytest.approx(0.25) and two["ratio_ci95"] == pytest.approx([0.25, 0.25])
    none = paired_ratio({"x": 0.0}, {"y": 0.4}, {"x": 0.1})
    assert none["n"] == 0 and none["ratio"] is None and none["reason"] == "no item has all three scores"
    assert set(none) == set(pr) == {"n", "ratio", "ratio_ci95", "denominator_ci95", "n_boot_undefined", "reason"}
    assert none["n_boot_undefined"] is None and none["denominator_ci95"] is None


def test_paired_ratio_denominator_ci_touching_zero_is_undefined():
    # changes of a: 0, 0, 0.3: about 30 % of resamples have a change of exactly 0, so the CI's low end is 0
    pr = paired_ratio({"x": 0.0, "y": 0.0, "z": 0.0}, {"x": 0.0, "y": 0.0, "z": 0.3}, {"x": 0.1, "y": 0.1, "z": 0.1}, n_boot=400)
    assert pr["denominator_ci95"][0] == 0.0 and pr["ratio"] is None and "includes 0" in pr["reason"]
    neg = paired_ratio({"x": 0.0, "y": 0.0, "z": 0.0}, {"x": 0.0, "y": 0.0, "z": -0.3}, {"x": 0.1, "y": 0.1, "z": 0.1}, n_boot=400)
    assert neg["denominator_ci95"][1] == 0.0 and neg["ratio"] is None


def test_paired_ratio_resamples_with_a_zero_denominator_are_unknowns():
    # changes of a: 0, 0, 1, 1, 1: (2/5)^5 = 1 % of resamples have a zero denominator (no ratio), too few to
    # make the denominator's CI include 0: they are kept beyond either end of the ratio's CI
    ids = list("vwxyz")
    x0 = np.zeros(5)
    xa = np.asarray([0.0, 0.0, 1.0, 1.0, 1.0])
    xb = np.asarray([0.3, 0.1, 0.5, 0.2, 0.4])
    d = lambda x: dict(zip(ids, x, strict=True))  # noqa: E731
    pr = paired_ratio(d(x0), d(xa), d(xb), n_boot=3000, seed=2)
    idx = np.random.default_rng(2).integers(0, 5, size=(3000, 5))
    da, db = xa[idx].mean(axis=1), xb[idx].mean(axis=1)
    zero = da == 0
    assert 0 < zero.sum() < 0.025 * 3000 and pr["n_boot_undefined"] == int(zero.sum())
    assert pr["ratio"] == pytest.approx(xb.mean() / xa.mean())
    assert pr["denominator_ci95"] == pytest.approx(list(np.percentile(da, [2.5, 97.5])))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = db / da
    lo, hi = np.percentile(np.where(zero, -np.inf, r), 2.5), np.percentile(np.where(zero, np.inf, r), 97.5)
    assert pr["ratio_ci95"] == pytest.approx([lo, hi]) and pr["reason"] is None


PINNED_VAL = ["item0", "item11", "item2", "item4", "item5", "item6", "item8", "item9"]
PINNED_VAL_SEED3 = ["item1", "item11", "item7", "item9"]


def test_split_items_is_pinned():
    # which items are held out must not move between versions: a reported tax at r* is measured on them
    val, test = split_items([f"item{i}" for i in range(12)], 0.5, seed=0)
    assert sorted(val) == PINNED_VAL and len(test) == 12 - len(PINNED_VAL)
    assert sorted(split_items([f"item{i}" for i in range(12)], 0.5, seed=3)[0]) == PINNED_VAL_SEED3
    assert sorted(split_items([f"item{i}" for i in range(12)], 0.5)[0]) == PINNED_VAL  # seed 0 by default


def test_interp_mean_averages_items_per_strength():
    recs = [_rec("a", 0.0, y=0.0), _rec("a", 1.0, y=1.0), _rec("b", 0.0, y=0.4), _rec("b", 1.0, y=0.6), _rec("c", 0.0, y=0.2)]
    assert interp_mean(recs, "y", 0.0) == pytest.approx(0.2)  # three items at r = 0
    assert interp_mean(recs, "y", 0.5) == pytest.approx((0.2 + 0.8) / 2)  # the item means interpolated
    assert interp_mean(recs, "y", 1.0, items={"a", "c"}) == pytest.approx(1.0)


def test_efficient_strength_range_without_zero_and_the_reported_curve():
    e = efficient_strength(fB, fH, (0.5, 4.0), 0.5)  # 0 is outside the range: not added
    assert e["r_star"] == pytest.approx(1.0, abs=RES) and e["curve"]["r"][0] == 0.5 and e["curve"]["r"][-1] == 4.0
    assert len(e["curve"]["r"]) == len(e["curve"]["U"]) == len(e["curve"]["dB"]) == len(e["curve"]["dH"]) == (R_GRID_POINTS - 1) // 40 + 1
    r = np.linspace(0.5, 4.0, R_GRID_POINTS)[::40]
    assert e["curve"]["r"] == pytest.approx(list(r)) and e["curve"]["dB"] == pytest.approx(list(np.tanh(r)))
    assert e["curve"]["U"] == pytest.approx(list(0.5 * (np.tanh(r) - C * r**2)))
    assert e["curve"]["dH"] == pytest.approx(list(-C * r**2))
    assert e["at_boundary"] is False and e["break_even"] == pytest.approx(1.0, abs=2 * RES)
    w0 = efficient_strength(fB, fH, (-4.0, 4.0), 0.0)  # all weight on alignment: r* at the top of tanh
    assert w0["r_star"] == 4.0 and w0["U_star"] == pytest.approx(math.tanh(4.0)) and w0["helpfulness_weight"] == 0.0
    dflt = efficient_strength(fB, fH, (-4.0, 4.0))
    assert dflt["r_star"] == efficient_strength(fB, fH, (-4.0, 4.0), 0.5)["r_star"] and dflt["helpfulness_weight"] == 0.5
    assert dflt["kl_ceiling"] is None and dflt["kl_limited"] is False


def test_efficient_strength_kl_ceiling_is_inclusive_and_needs_both():
    flat_kl = lambda r: np.full(np.shape(r), 0.5)  # noqa: E731
    e = efficient_strength(fB, fH, (-4.0, 4.0), 0.5, kl=flat_kl, kl_ceiling=0.5)  # KL exactly at the ceiling: allowed
    assert e["ok"] and abs(e["r_star"] - 1.0) <= RES and e["kl_limited"] is False
    assert efficient_strength(fB, fH, (-4.0, 4.0), 0.5, kl=flat_kl)["kl_limited"] is False  # no ceiling: no limit
    assert efficient_strength(fB, fH, (-4.0, 4.0), 0.5, kl_ceiling=0.1)["kl_limited"] is False  # no KL: no limit
    nan = efficient_strength(lambda r: np.full(np.shape(r), np.nan), fH, (-1.0, 1.0), 0.5)
    assert nan["ok"] is False and nan["reason"] == "the fitted laws give no finite utility on the strength range"
    nan_kl = efficient_strength(lambda r: np.full(np.shape(r), np.nan), fH, (-1.0, 1.0), 0.5, kl=flat_kl, kl_ceiling=0.1)
    assert nan_kl["reason"] == "the fitted laws give no finite utility on the strength range"


def test_break_even_is_the_first_peak_of_the_net_gain_on_r_above_zero():
    step = 4.0 / (R_GRID_POINTS - 1)  # the grid on (−2, 2)
    zero = lambda r: np.zeros(np.shape(r))  # noqa: E731
    x = lambda r: np.asarray(r, dtype=float)  # noqa: E731
    assert efficient_strength(lambda r: -(x(r) ** 2), zero, (-2.0, 2.0), 0.5)["break_even"] is None  # the peak is r = 0
    assert efficient_strength(lambda r: -((x(r) + 0.0005) ** 2), zero, (-2.0, 2.0), 0.5)["break_even"] is None  # just below 0
    assert efficient_strength(zero, zero, (-2.0, 2.0), 0.5)["break_even"] is None  # never rises: no peak
    e = efficient_strength(lambda r: np.minimum(x(r), 0.5), zero, (-2.0, 2.0), 0.5)
    assert e["break_even"] == pytest.approx(0.5, abs=2 * step)  # rises to 0.5, then flat
    two = efficient_strength(lambda r: np.sin(np.pi * x(r)), zero, (-1.0, 3.0), 0.5)  # peaks at 0.5 and 2.5: the first
    assert two["break_even"] == pytest.approx(0.5, abs=2 * step)
    first = efficient_strength(lambda r: -((x(r) - 0.001) ** 2), zero, (0.0, 4.0), 0.5)  # the peak at the first grid step
    assert first["break_even"] == pytest.approx(0.001)


def test_the_optimum_on_the_grid_and_laws_not_through_zero():
    # the analytic optimum r = 1 is a point of the 4001-point grid on (0, 4): r* is it exactly
    e = efficient_strength(fB, fH, (0.0, 4.0), 0.5)
    assert e["r_star"] == pytest.approx(1.0, abs=1e-9) and R_GRID_POINTS == 4001
    # the changes are from r = 0 even when the laws do not pass through 0 there
    up = efficient_strength(lambda r: fB(r) + 0.3, lambda r: fH(r) - 0.2, (-4.0, 4.0), 0.5)
    assert up["r_star"] == pytest.approx(e["r_star"], abs=RES) and up["dB_star"] == pytest.approx(math.tanh(up["r_star"]))
    assert up["dH_star"] == pytest.approx(-C * up["r_star"] ** 2) and up["U_star"] == pytest.approx(0.5 * (math.tanh(1.0) - C), abs=1e-6)


def test_no_finite_utility_is_never_allowed_under_a_kl_ceiling():
    holes = lambda r: np.where(np.asarray(r) > 0.5, np.nan, fB(r))  # noqa: E731  (no law beyond r = 0.5)
    e = efficient_strength(holes, fH, (-4.0, 4.0), 0.5, kl=lambda r: np.zeros(np.shape(r)), kl_ceiling=1.0)
    assert e["ok"] and e["r_star"] == pytest.approx(0.5, abs=RES) and math.isfinite(e["U_star"])


def test_two_tied_strengths_are_noted_and_the_nearer_zero_wins():
    bump = lambda r: -((np.asarray(r, dtype=float) - 1.0) ** 2) * ((np.asarray(r, dtype=float) + 2.0) ** 2)  # noqa: E731
    zero = lambda r: np.zeros(np.shape(r))  # noqa: E731
    e = efficient_strength(bump, zero, (-4.0, 4.0), 0.0)  # maxima at r = 1 and r = −2, both on the grid
    assert e["r_star"] == pytest.approx(1.0) and e["note"] is not None and "over 2 of" in e["note"]


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_tax_table_base_at_the_floor_has_a_percent():
    ents = {"f": {"axis": "helpfulness", "metric": "acc", "scorer": "logprob"}}
    recs = {"f": _task_recs({"a": TAX_BASE_FLOOR, "b": TAX_BASE_FLOOR}, {"a": 0.04, "b": 0.04}, "acc")}
    (row,) = tax_table(ents, recs, 2.0)
    assert row["tax_percent"] == pytest.approx(20.0) and row["tax_note"] is None and row["r_star"] == 2.0
    assert (row["task"], row["axis"], row["metric"], row["scorer"]) == ("f", "helpfulness", "acc", "logprob")
    (hi,) = tax_table(ents, recs, 2.0, floor=0.06)  # a floor of its own
    assert hi["tax_percent"] is None and "below the floor 0.06" in hi["tax_note"]
    nan = {"f": [dict(x, acc=float("nan")) if x["strength"] else x for x in recs["f"]]}
    (row,) = tax_table(ents, nan, 2.0)
    assert row["tax_percent"] is None and row["tax_note"] == "no score measured"
    neg = {"f": {"axis": "helpfulness", "metric": "acc", "scorer": "logprob"}}
    (row,) = tax_table(neg, {"f": _task_recs({"a": -0.5}, {"a": -0.25}, "acc")}, 2.0)
    assert row["tax_percent"] == pytest.approx(50.0)  # |base| is what the floor looks at


def test_paired_change_unknowns_sit_below_the_low_end_and_above_the_high_end():
    # 16 of 20 items with a zero base: about 1 % of resamples draw none of the other 4 and have no tax %
    rng = np.random.default_rng(12)
    b = np.concatenate([np.zeros(16), rng.uniform(1.1, 1.5, 4)])
    o = np.concatenate([rng.uniform(-0.05, 0.05, 16), b[16:] - rng.uniform(0.0, 0.3, 4)])
    ids = _ids(20, "u")
    ch = paired_change(dict(zip(ids, b, strict=True)), dict(zip(ids, o, strict=True)), n_boot=3000, seed=5)
    idx = np.random.default_rng(5).integers(0, 20, size=(3000, 20))
    bb, ob = b[idx].mean(axis=1), o[idx].mean(axis=1)
    below = np.abs(bb) < TAX_BASE_FLOOR
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (bb - ob) / bb * 100
    lo, hi = np.percentile(np.where(below, -np.inf, t), 2.5), np.percentile(np.where(below, np.inf, t), 97.5)
    assert 0 < below.sum() < 75 and ch["n_boot_below_floor"] == int(below.sum())
    assert lo < np.percentile(np.where(below, np.inf, t), 2.5) and hi > np.percentile(np.where(below, -np.inf, t), 97.5)
    assert ch["tax_ci95"] == pytest.approx([lo, hi])


def test_paired_ratio_denominator_ci_and_a_denominator_of_one():
    rng = np.random.default_rng(21)
    n = 30
    x0 = rng.uniform(0, 0.5, n)
    xa = x0 + rng.uniform(0.7, 1.3, n)  # a change of about 1: its CI includes 1, which is no reason for no ratio
    xb = x0 + rng.uniform(0.0, 0.4, n)
    ids = _ids(n, "w")
    d = lambda x: dict(zip(ids, x, strict=True))  # noqa: E731
    pr = paired_ratio(d(x0), d(xa), d(xb), n_boot=500, seed=3)
    idx = np.random.default_rng(3).integers(0, n, size=(500, n))
    m0 = x0[idx].mean(axis=1)
    da = xa[idx].mean(axis=1) - m0
    lo, hi = np.percentile(da, [2.5, 97.5])
    assert lo < 1 < hi and pr["denominator_ci95"] == pytest.approx([lo, hi])
    assert pr["ratio"] == pytest.approx((xb.mean() - x0.mean()) / (xa.mean() - x0.mean())) and pr["reason"] is None
    ones = paired_ratio({"x": 0.0, "y": 0.0}, {"x": 1.0, "y": 1.0}, {"x": 0.3, "y": 0.3}, n_boot=50)  # a change of exactly 1
    assert ones["ratio"] == pytest.approx(0.3) and ones["ratio_ci95"] == pytest.approx([0.3, 0.3])


def test_paired_ratio_zero_denominators_reaching_the_ci_ends_leave_no_ratio_ci():
    # changes of a: 0, 0, 1, 1: 1 in 16 resamples has a zero denominator; with 40 resamples and exactly one of
    # them zero, the denominator's 2.5 % point is still above 0 but the ratio's 2.5 % point needs that resample
    x0 = {k: 0.0 for k in "wxyz"}
    xa = dict(zip("wxyz", [0.0, 0.0, 1.0, 1.0], strict=True))
    xb = dict(zip("wxyz", [0.1, 0.2, 0.3, 0.5], strict=True))
    for seed in range(200):
        idx = np.random.default_rng(seed).integers(0, 4, size=(40, 4))
        if int((np.asarray([0.0, 0.0, 1.0, 1.0])[idx].mean(axis=1) == 0).sum()) == 1:
            break
    pr = paired_ratio(x0, xa, xb, n_boot=40, seed=seed)
    assert pr["denominator_ci95"][0] > 0 and pr["ratio"] == pytest.approx(0.55) and pr["n_boot_undefined"] == 1
    assert pr["ratio_ci95"] is None and pr["reason"] == "1 of 40 resamples have a zero denominator (no ratio): no CI for the ratio"
