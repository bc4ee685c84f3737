"""The paper's laws recover known parameters from synthetic per-item curves (within their CIs)."""
from __future__ import annotations

import numpy as np

from steertax.laws import fit_law, fit_task, help_law, make_floor_law, tanh_law


def inside(p, truth):
    lo, hi = p["ci95"]
    return lo <= truth <= hi


def test_tanh_recovered_from_binary_items():
    rng = np.random.default_rng(0)
    S = np.linspace(-10, 20, 13)
    prob = (1 + tanh_law(S, 0.15, -0.6)) / 2
    Y = np.where(rng.random((400, len(S))) < prob, 1.0, -1.0)  # each item refuses (+1) or complies (-1)
    f = fit_law("tanh", S, Y, n_boot=300)
    assert f["ok"] and f["r2"] > 0.95
    assert inside(f["params"]["a"], 0.15) and inside(f["params"]["b0"], -0.6), f["params"]


def test_inverse_quadratic_recovered():
    rng = np.random.default_rng(1)
    S = np.linspace(-12, 12, 13)
    Y = help_law(S, 1.5, 0.12)[None] + rng.normal(0, 0.15, (300, len(S)))
    f = fit_law("inverse_quadratic", S, Y, n_boot=300)
    assert inside(f["params"]["a"], 1.5) and inside(f["params"]["b"], 0.12), f["params"]


def test_floor_variant_and_local_laws():
    rng = np.random.default_rng(2)
    S = np.linspace(-10, 10, 11)
    law = make_floor_law(0.25)
    Y = law(S, 0.8, 0.2)[None] + rng.normal(0, 0.1, (300, len(S)))
    recs = [{"item": f"i{i}", "strength": float(s), "scorer": "logprob", "p": float(Y[i, j])}
            for i in range(Y.shape[0]) for j, s in enumerate(S)]
    f = fit_task(recs, "p", "helpfulness", chance=0.25, n_boot=200)
    assert f["law"] == "inverse_quadratic_floor"
    assert inside(f["params"]["a"], 0.8) and inside(f["params"]["b"], 0.2), f["params"]
    # small-|r| helpfulness loss is quadratic, not linear
    assert f["local"]["quadratic_beats_linear_aic"] is True
    assert f["local"]["quadratic"]["params"]["k2"]["value"] > 0
    # alignment: the local law is linear with slope ~ a(1 - B0^2)
    Yb = np.clip(tanh_law(S, 0.1, 0.0)[None] + rng.normal(0, 0.05, (200, len(S))), -1, 1)
    recs = [{"item": f"i{i}", "strength": float(s), "scorer": "logprob", "B": float(Yb[i, j])}
            for i in range(Yb.shape[0]) for j, s in enumerate(S)]
    g = fit_task(recs, "B", "alignment", r_local=3, n_boot=100)
    k1 = g["local"]["linear"]["params"]["k1"]["value"]
    assert abs(k1 - 0.1) < 0.01


def test_too_few_strengths():
    f = fit_task([{"item": "a", "strength": 0.0, "B": 0.1}, {"item": "a", "strength": 1.0, "B": 0.2}], "B", "alignment")
    assert f["ok"] is False
