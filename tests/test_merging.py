"""Model merging: the methods on hand-made and random low-rank task vectors (TSV-M is the sum on
orthogonal subspaces and keeps its ranks, TIES trims and elects signs, DARE keeps the expectation),
the merged model as an intervention (a merge of one specialist at scale 1 = the specialist, scale 0 =
the base, weights restored bit for bit),
a tiny end-to-end `steertax merge` that resumes and lands in `steertax compare`, bad input in one line."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch
import yaml

from conftest import ONE_AXIS, ONE_AXIS_CLI, make_tokenizer, tiny_model
from steertax.cli import main
from steertax.errors import ConfigError, DataError, ModelError
from steertax.interventions import AdapterIntervention
from steertax.interventions.merge import (
    MergedIntervention,
    adapter_deltas,
    energy_rank,
    merge_deltas,
    model_deltas,
    outlier_ratio,
    rtsvm_merge,
    tsvm_merge,
)
from steertax.runners.align import AlignSetting, LoraSettings, TrainSettings, preference_data, train_setting
from steertax.runners.merge_config import merge_from_dict


def _orthogonal(n, seed):
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_tsvm_is_the_sum_on_orthogonal_subspaces_and_keeps_its_ranks():
    m, n = 12, 9
    Q, R = _orthogonal(m, 0), _orthogonal(n, 1)
    d1 = Q[:, :3] @ torch.diag(torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64)) @ R[:, :3].T
    d2 = Q[:, 3:5] @ torch.diag(torch.tensor([4.0, 2.0], dtype=torch.float64)) @ R[:, 3:5].T
    assert torch.allclose(tsvm_merge([d1, d2], [1.0, 1.0]), d1 + d2, atol=1e-10)
    assert torch.allclose(tsvm_merge([d1, d2], [2.0, 0.5]), 2 * d1 + 0.5 * d2, atol=1e-10)
    # ranks as configured: each task keeps its top k singular triplets
    got = tsvm_merge([d1, d2], [1.0, 1.0], ranks=[2, 1])
    want = Q[:, :2] @ torch.diag(torch.tensor([5.0, 3.0], dtype=torch.float64)) @ R[:, :2].T + Q[:, 3:4] * 4.0 @ R[:, 3:4].T
    assert torch.allclose(got, want, atol=1e-10) and int(torch.linalg.matrix_rank(got)) == 3
    # overlapping subspaces: the merge is orthogonalized, so its singular values are exactly the kept ones
    a = torch.randn(m, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    b = a + 0.1 * torch.randn(m, n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    merged = tsvm_merge([a, b], [1.0, 1.0])
    kept = torch.cat([torch.linalg.svdvals(a)[:4], torch.linalg.svdvals(b)[:4]])
    assert torch.allclose(torch.linalg.svdvals(merged)[:8], kept.sort(descending=True).values, atol=1e-8)
    assert float(torch.linalg.svdvals(merged)[8]) < 1e-8  # 2 x floor(9/2) directions kept, the last slot empty


def test_rtsvm_reweights_outlier_tasks_and_picks_ranks_by_energy():
    m, n = 20, 16
    Q, R = _orthogonal(m, 4), _orthogonal(n, 5)
    clean = Q[:, :2] @ torch.diag(torch.tensor([3.0, 2.0], dtype=torch.float64)) @ R[:, :2].T
    noisy = Q[:, 2:4] @ torch.diag(torch.tensor([3.0, 2.0], dtype=torch.float64)) @ R[:, 2:4].T
    noisy[0, 0] += 40.0  # one huge outlier entry
    assert outlier_ratio(noisy) > outlier_ratio(clean) == 0.0
    assert energy_rank(clean, 0.5) == 1 and energy_rank(clean, 0.99) == 2
    merged = rtsvm_merge([clean, noisy], [1.0, 1.0])
    # the outlier-heavy task is down-weighted: the clean task's part survives at (about) full strength
    part_clean = torch.diag(Q[:, :2].T @ merged @ R[:, :2]) / torch.tensor([3.0, 2.0], dtype=torch.float64)
    assert (part_clean > 1.2).all()  # weight 1.5 (no outliers) after renormalization
    assert merged.abs().max() < 0.75 * noisy.abs().max()  # the outlier-heavy task at weight 0.5
    # a specialist that leaves a matrix alone takes no part in it: the other's delta is not shrunk
    alone = rtsvm_merge([noisy, torch.zeros_like(noisy)], [1.0, 1.0], energy=1.0)
    assert torch.allclose(alone, noisy, atol=1e-9)


def test_ties_trims_and_elects_signs_on_hand_made_vectors():
    t1 = {"w": torch.tensor([[3.0, -1.0, 0.5, 2.0]])}
    t2 = {"w": torch.tensor([[-1.0, -2.0, 1.0, 4.0]])}
    # density 0.5: t1 keeps 3, 2; t2 keeps -2, 4. Sign by total mass: +, -, (0 ->) +, +. Mean of agreeing entries.
    got = merge_deltas([t1, t2], [1.0, 1.0], "ties", density=0.5)["w"]
    assert torch.equal(got, torch.tensor([[3.0, -2.0, 0.0, 3.0]]))
    # no trimming: 0.5 vs 1 elects +; -1 vs -2 elects -
    got = merge_deltas([t1, t2], [1.0, 1.0], "ties", density=1.0)["w"]
    assert torch.equal(got, torch.tensor([[3.0, -1.5, 0.75, 3.0]]))
    assert torch.equal(merge_deltas([t1, t2], [1.0, 1.0], "dare", density=1.0, combine="ties")["w"], got)  # nothing dropped
    assert torch.equal(merge_deltas([t1, t2], [1.0, 1.0], "task_arithmetic")["w"], t1["w"] + t2["w"])


def test_dare_keeps_the_expectation():
    t = {"w": torch.randn(4, 5, generator=torch.Generator().manual_seed(0))}
    draws = torch.stack([merge_deltas([t], [1.0], "dare", density=0.3, seed=k)["w"] for k in range(3000)])
    assert torch.allclose(draws.mean(0), t["w"], atol=0.1 * float(t["w"].abs().max()))
    one = merge_deltas([t], [1.0], "dare", density=0.3, seed=7)["w"]
    kept = one != 0
    assert torch.allclose(one[kept], t["w"][kept] / 0.3)  # survivors rescaled by 1/density
    assert torch.equal(one, merge_deltas([t], [1.0], "dare", density=0.3, seed=7)["w"])  # seeded


# each method's parameters that keep every entry and direction: a merge of one specialist is then that specialist
KEEP_ALL = {"ties": {"density": 1.0}, "dare": {"density": 1.0}, "rtsvm": {"energy": 1.0}}

LORA = LoraSettings(r=4, alpha=8, targets=["q_proj", "v_proj", "up_proj"])
TRAIN = TrainSettings(steps=4, lr=2e-2, batch_size=4, max_length=96, warmup_steps=0)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    d = tmp_path_factory.mktemp("spec")
    train_setting(
        tiny_model("llama", n_layers=2, seed=1),
        make_tokenizer(),
        AlignSetting.of("dpo", beta=0.5),
        preference_data("refusal", 8, seed=0),
        d / "a",
        lora=LORA,
        train=TRAIN,
        progress=False,
    )
    return d / "a"


def _logits(model, tok, text="Tell me how to pick a lock."):
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_intervention_weight_one_is_the_specialist_and_zero_the_base(adapter):
    model, tok = tiny_model("llama", n_layers=2, seed=1), make_tokenizer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    base = _logits(model, tok)
    with AdapterIntervention(adapter, "dpo", "a").apply(model) as applied:
        m = applied.model
        spec = _logits(m, tok)
    deltas = adapter_deltas(adapter, model)
    for method in ("task_arithmetic", "ties", "tsvm", "rtsvm", "dare"):
        # density 1 (nothing dropped) and, for R-TSVM, energy 1 (every direction kept): then a merge of one is that one
        merged = merge_deltas([deltas], [1.0], method, **KEEP_ALL.get(method, {}))
        with MergedIntervention(merged, 1.0, method, "one").apply(model) as applied:
            m = applied.model
            assert torch.allclose(_logits(m, tok), spec, atol=1e-4), method
        with MergedIntervention(merged, 0.0, method, "zero").apply(model) as applied:
            m = applied.model
            assert torch.equal(_logits(m, tok), base)
        # one specialist at weight 0 is the base, bit for bit
        w0 = merge_deltas([deltas], [0.0], method, **KEEP_ALL.get(method, {}))
        with MergedIntervention(w0, 1.0, method, "w0").apply(model) as applied:
            m = applied.model
            assert torch.equal(_logits(m, tok), base), method
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # restored bit for bit


def test_a_full_model_specialist():
    from steertax.interventions.merge import model_deltas

    tok = make_tokenizer()
    base, spec = tiny_model("llama", n_layers=2, seed=1), tiny_model("llama", n_layers=2, seed=1)
    with torch.no_grad():
        for n, p in spec.named_parameters():  # every parameter: 2-D weights, norms, the embedding
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))))
    d = model_deltas(spec, base)
    assert set(d) == {n for n, _ in base.named_parameters()}  # norms and embeddings kept (were dropped: 2-D only)
    with MergedIntervention(d, 1.0, "specialist", "full").apply(base) as applied:
        m = applied.model
        assert torch.allclose(_logits(m, tok), _logits(spec, tok), atol=1e-5)
    with pytest.raises(ModelError, match="not the same architecture|architecture"):
        model_deltas(tiny_model("gpt2", n_layers=2), base)


def test_bad_merge_inputs(adapter, tmp_path):
    with pytest.raises(ModelError, match="another base model"):
        adapter_deltas(adapter, tiny_model("gpt2", n_layers=2))
    with pytest.raises(DataError, match="not a peft adapter"):
        adapter_deltas(tmp_path / "nothing")
    t = {"w": torch.ones(2, 2)}
    with pytest.raises(DataError, match="NaN"):
        merge_deltas([t, t], [1.0, float("nan")], "task_arithmetic")
    base = {"specialists": [{"name": "a", "data": "harmless"}], "tasks": [{"name": "arc_easy"}]}
    with pytest.raises(ConfigError, match="not one of"):
        merge_from_dict({**base, "merges": [{"method": "slerp"}]})
    with pytest.raises(ConfigError, match="one per specialist"):
        merge_from_dict({**base, "merges": [{"method": "ties", "weights": [1, 2]}]})
    with pytest.raises(ConfigError, match="not a finite number"):
        merge_from_dict({**base, "merges": [{"method": "ties", "weights": [float("nan")]}]})
    with pytest.raises(ConfigError, match="appears twice"):
        merge_from_dict({**base, "merges": [{"method": "ties"}, {"method": "ties"}]})
    assert merge_from_dict({**base, "merges": [{"method": "rtsvm"}, {"method": "rtsvm", "energy": 0.99}]})
    with pytest.raises(ConfigError, match=r"merges\[0\].weight_of: 'b' is not a specialist \(a\)"):
        merge_from_dict({**base, "merges": [{"method": "ties", "weight_of": "b", "weight_grid": [1, 2]}]})
    with pytest.raises(ConfigError, match="at least two distinct"):
        merge_from_dict({**base, "merges": [{"method": "ties", "weight_of": "a", "weight_grid": [2, 2]}]})
    with pytest.raises(ConfigError, match=r"specialists\[0\].alphas: .* lists 0 or 1"):
        merge_from_dict({**base, "specialists": [{"name": "a", "data": "harmless", "alphas": [0.5, 1.0]}], "merges": [{"method": "ties"}]})
    grid = merge_from_dict({**base, "merges": [{"method": "ties", "weight_of": "a", "weight_grid": [3, 1.5]}]})
    assert [(m.weights, m.weight_of) for m in grid.merges] == [([1.5], "a"), ([3.0], "a")]
    assert merge_from_dict(grid.to_dict()).merges == grid.merges  # a resolved config reloads as it was


def test_builtin_merge_config_draws_every_method_as_a_curve():
    from steertax.runners.merge_config import load_merge_config

    cfg = load_merge_config(None)
    by_method: dict[str, int] = {}
    for m in cfg.merges:
        if m.weight_of is None:
            by_method[m.method] = len(m.scales)
    assert set(by_method) == {"task_arithmetic", "ties", "dare", "tsvm", "rtsvm"} and min(by_method.values()) >= 4
    assert len({m.weights[0] for m in cfg.merges if m.weight_of == "harmless"}) >= 3  # the harmless weight's curve
    assert len(cfg.alphas) >= 2 and cfg.mixture  # the mixture's α curve


def _merge_cfg(tiny_dir, path, **over):
    cfg = {
        "model": str(tiny_dir),
        "seed": 0,
        "chunk": 4,
        "batch_size": 8,
        "n_pairs": 8,
        "lora": {"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
        "train": {"steps": 2, "lr": 0.01, "batch_size": 4, "max_length": 96, "warmup_steps": 0},
        "specialists": [{"name": "harmless", "data": "harmless"}, {"name": "honest", "data": "honest"}],
        "merges": [
            {"method": "task_arithmetic", "scales": [0.5, 1.0]},
            {"method": "tsvm", "scales": [1.0]},
            {"method": "task_arithmetic", "scales": [1.0], "weight_of": "harmless", "weight_grid": [3.0, 2.0]},
        ],
        "tasks": [
            {"name": "refusal", "limit": 4, "options": {"scorers": ["logprob"]}},
            {"name": "arc_easy", "limit": 4},
            {"name": "truthfulqa", "limit": 4},
        ],
    }
    cfg.update(over)
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def test_merge_command_end_to_end_resume_and_compare(tmp_path, capsys):
    d = tmp_path / "tiny"
    tiny_model("llama", n_layers=2, seed=1).save_pretrained(d)
    make_tokenizer().save_pretrained(d)
    cfg = _merge_cfg(d, tmp_path / "m.yaml")
    out = tmp_path / "out"
    assert main(["--quiet", "merge", str(cfg), "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [(r["method"], r["setting"]) for r in s["settings"]] == [
        ("base", "base"),
        ("specialist", "harmless"),
        ("specialist", "honest"),
        ("mixture", "mixture"),
        ("task_arithmetic", "task_arithmetic λ=0.5"),
        ("task_arithmetic", "task_arithmetic λ=1"),
        ("tsvm", "tsvm λ=1"),
        ("task_arithmetic", "task_arithmetic λ=1 w=2,1"),  # the harmless weight's curve, in weight order
        ("task_arithmetic", "task_arithmetic λ=1 w=3,1"),
    ]
    assert (out / "figures" / "merge_3h.png").stat().st_size > 5000
    con = sqlite3.connect(out / "results.sqlite")
    n = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    con.close()
    assert n == 9 * 12
    mtimes = {p.parent.name: p.stat().st_mtime_ns for p in (out / "adapters").glob("*/setting.json")}
    assert len(mtimes) == 3  # two specialists and the mixture
    assert main(["--quiet", "merge", str(cfg), "--out", str(out)]) == 0  # resume: nothing retrained or re-scored
    assert {p.parent.name: p.stat().st_mtime_ns for p in (out / "adapters").glob("*/setting.json")} == mtimes
    con = sqlite3.connect(out / "results.sqlite")
    assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == n
    con.close()
    capsys.readouterr()
    assert main(["--quiet", "compare", *ONE_AXIS_CLI, str(out), "--out", str(tmp_path / "cmp")]) == 0
    res = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    weight = "task_arithmetic λ=1 w=·,1 (harmless weight)"
    assert {m["kind"] for m in res["methods"]} == {"specialist harmless", "specialist honest", "mixture", "task_arithmetic", "tsvm", weight}
    w = next(m for m in res["methods"] if m["kind"] == weight)  # one curve along the harmless specialist's weight
    assert w["knob"] == "w(harmless)" and [p["value"] for p in w["points"]] == [None, 2.0, 3.0]
    assert not w["laws"]["fitted"]  # the base is not at a weight of 0
    assert {m["family"] for m in res["methods"]} == {"fine-tuning", "merging"}
    # --evaluate rebuilds every setting (specialists, mixture, merges over the cached specialists) and scores
    # them on one item list against one base: the same numbers as the folder's own rows
    from steertax.runners.compare import compare

    ev = compare([out], tmp_path / "cmp-ev", **ONE_AXIS, evaluate=True, n_boot=200, progress=False, chunk=4, step=4)
    assert [(r["method"], r["setting"]) for r in ev["table"]] == [(r["method"], r["setting"]) for r in res["table"]]
    for r0, r1 in zip(res["table"], ev["table"], strict=True):
        assert r1["dB"] == pytest.approx(r0["dB"], abs=1e-4) and r1["dH"] == pytest.approx(r0["dH"], abs=1e-4)
    # settings against settings: the merge's two scales, the merges at the same scale, each merge against the mixture
    pairs = {(c["a"], c["b"]) for c in res["contrasts"]["comparisons"]}
    assert ("task_arithmetic/task_arithmetic λ=1", "mixture/mixture") in pairs
    assert ("task_arithmetic/task_arithmetic λ=1", "tsvm/tsvm λ=1") in pairs
    assert all(
        c["verdict"].endswith(f"4 {c['task']} items") for c in res["contrasts"]["comparisons"] if c["status"] == "ok" and not c["decided"]
    )
    # bad input: one line, exit 2
    bad = _merge_cfg(
        d, tmp_path / "bad.yaml", specialists=[{"name": "x", "adapter": str(tmp_path / "missing")}], merges=[{"method": "tsvm"}]
    )
    assert main(["--quiet", "merge", str(bad), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a peft adapter folder" in err[0]


@pytest.mark.slow
def test_smollm2_merge_of_two_adapters_lands_in_the_store(tmp_path):
    from steertax.runners.merge import run_merge
    from steertax.runners.merge_config import load_merge_config

    cfg = load_merge_config(None).to_dict()
    cfg["specialists"] = cfg["specialists"][:2]
    cfg["merges"] = [{"method": "ties", "scales": [1.0], "density": 0.5}, {"method": "rtsvm", "scales": [1.0]}]
    cfg["alphas"] = []  # one short run: no α curve
    cfg = merge_from_dict(cfg).quick_version()
    s = run_merge(cfg, tmp_path / "m", progress=False)
    methods = [r["method"] for r in s["settings"]]
    assert methods == ["base", "specialist", "specialist", "mixture", "ties", "rtsvm"]
    harmless = next(r for r in s["settings"] if r["setting"] == "harmless")
    assert harmless["tasks"]["refusal"]["delta"] > 0  # the harmless specialist refuses more than the base


def test_thin_svd_is_the_svd_for_low_and_full_rank():
    from steertax.interventions.merge import thin_svd

    g = torch.Generator().manual_seed(3)
    low = (torch.randn(300, 8, generator=g) @ torch.randn(8, 500, generator=g)).float()  # a LoRA-like delta, float32
    full = torch.randn(300, 200, generator=g, dtype=torch.float64)
    for d in (low, full, torch.zeros(300, 500)):
        u, s, vh = thin_svd(d)
        ref = torch.linalg.svdvals(d.double())
        k = len(s)
        r = int((ref > 1e-4 * ref[0]).sum())  # the directions above float32 rounding: the same; below it, noise either way
        assert r <= k and torch.allclose(s[:r], ref[:r], rtol=1e-6)
        assert torch.allclose(u @ torch.diag(s) @ vh, d.double(), atol=1e-5 * float(d.abs().max() + 1e-30) + 1e-12)
        assert torch.allclose(u.T @ u, torch.eye(k, dtype=u.dtype), atol=1e-8)
    assert len(thin_svd(low)[1]) == 64  # the probe's size: the fast path
    assert len(thin_svd(full)[1]) == 200  # full rank: the full SVD


def test_the_guides_example_method_is_registered_and_merges():
    """docs/DESIGN.md's "Adding a merge method" example (steertax/merges/average.py): registered by its file
    alone, usable by name in merge_deltas and in a merge config, in the store key, and the weighted mean."""
    from steertax.interventions.merge import MERGE_REGISTRY, merge_deltas
    from steertax.runners.merge_config import merge_from_dict

    assert "average" in MERGE_REGISTRY and MERGE_REGISTRY["average"].version == 1
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(4, 3, generator=g)}
    b = {"w": torch.randn(4, 3, generator=g), "v": torch.randn(2, 2, generator=g)}
    out = merge_deltas([a, b], [3.0, 1.0], "average")
    assert torch.allclose(out["w"], (3 * a["w"] + b["w"]) / 4) and torch.allclose(out["v"], b["v"] / 4)
    cfg = merge_from_dict(
        {
            "specialists": [{"name": "h", "data": "harmless"}],
            "merges": [{"method": "average", "scales": [1.0]}],
            "tasks": [{"name": "arc_easy"}],
        }
    )
    assert cfg.merges[0].name(1.0) == "average λ=1"


def _peft_adapter(path, arch, **lora):
    from peft import LoraConfig, get_peft_model

    from steertax._util import quiet_renamed_checkpointing

    torch.manual_seed(3)
    with quiet_renamed_checkpointing():
        pm = get_peft_model(tiny_model(arch, n_layers=2, seed=1), LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **lora))
    pm.save_pretrained(str(path))
    return pm


@pytest.mark.parametrize(
    "arch,lora",
    [
        ("gpt2", {"target_modules": ["c_proj"], "fan_in_fan_out": True}),  # GPT-2's square Conv1D: B@A would be transposed
        ("llama", {"target_modules": ["q_proj", "v_proj"], "rank_pattern": {"q_proj": 2}, "alpha_pattern": {"v_proj": 32}}),
        ("llama", {"target_modules": ["q_proj", "o_proj"], "use_rslora": True}),
    ],
)
def test_adapter_deltas_are_peft_own(tmp_path, arch, lora):
    """A merge of one adapter at scale 1 is that adapter as peft runs it, whatever its config says."""
    tok = make_tokenizer()
    pm = _peft_adapter(tmp_path / "a", arch, **lora)
    pm.eval()
    want = _logits(pm, tok)
    base = tiny_model(arch, n_layers=2, seed=1)
    d = adapter_deltas(tmp_path / "a", base)
    with MergedIntervention(d, 1.0, "specialist", "one").apply(base) as a:
        assert torch.allclose(_logits(a.model, tok), want, atol=1e-5)


@pytest.mark.parametrize("lora,msg", [({"use_dora": True}, "DoRA"), ({"lora_bias": True}, "LoRA bias"), ({"bias": "all"}, "base biases")])
def test_adapter_features_merging_does_not_handle_are_refused(tmp_path, lora, msg):
    _peft_adapter(tmp_path / "a", "llama", target_modules=["q_proj"], **lora)
    with pytest.raises(DataError, match=msg):
        adapter_deltas(tmp_path / "a", tiny_model("llama", n_layers=2, seed=1))


def test_the_mixture_is_trained_with_its_stated_beta(monkeypatch, tmp_path):
    """The mixture's β is configurable and stated; specialists with different β and no mixture_beta are refused
    (the mixture used to take the first specialist's β silently)."""
    import steertax.runners.merge as M
    from steertax.runners.merge_config import load_merge_config, merge_from_dict

    cfg = load_merge_config(None)
    assert cfg.resolved_mixture_beta() == 0.1
    d = cfg.to_dict()
    d["specialists"][1]["beta"] = 0.5
    with pytest.raises(ConfigError, match="mixture_beta"):
        merge_from_dict(d)
    d["mixture_beta"] = 0.3
    cfg = merge_from_dict(d)
    seen = {}

    def fake_train(cfg, name, rows, beta, *a, **k):
        seen[name] = beta
        return tmp_path / name

    monkeypatch.setattr(M, "_train_once", fake_train)
    M._specialists(cfg, None, None, tmp_path, False, set())
    assert seen == {"harmless": 0.1, "helpful": 0.5, "honest": 0.1, "mixture": 0.3}


def test_every_method_merges_full_model_deltas_with_norms_and_biases():
    """Full-model specialists change 1-D parameters too (norms, biases): every method merges them (the SVD
    methods take their mean over tasks) and a merge of one specialist at density 1 is that specialist."""
    base = tiny_model("gpt2", n_layers=2, seed=1)
    specs = []
    for k in range(2):
        sp = tiny_model("gpt2", n_layers=2, seed=1)
        with torch.no_grad():
            for n, p in sp.named_parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n) + 7 * k)))
        specs.append(model_deltas(sp, base))
    assert any(v.ndim == 1 for v in specs[0].values())
    for method in ("task_arithmetic", "ties", "dare", "tsvm", "rtsvm"):
        merged = merge_deltas(specs, [1.0, 1.0], method, **KEEP_ALL.get(method, {}))
        assert set(merged) == set(specs[0]) and all(torch.isfinite(v).all() for v in merged.values()), method
        one = merge_deltas(specs[:1], [1.0], method, **KEEP_ALL.get(method, {}))
        for k, v in one.items():
            if v.ndim == 1:
                assert torch.allclose(v, specs[0][k], atol=1e-6), (method, k)


def test_a_merge_spec_takes_its_methods_own_parameters():
    """Each method declares its parameters: a config's flat keys are checked against them (another method's
    parameter is refused naming the method's own), its check refuses bad values, merge_deltas takes them as
    keywords or as the method's dataclass, and a setting's name shows the ones that are not the defaults."""
    from steertax.interventions.merge import DareParams, TiesParams

    base = {"specialists": [{"name": "a", "data": "harmless"}], "tasks": [{"name": "arc_easy"}]}

    def refused(merge, match, error=ConfigError):
        with pytest.raises(error, match=match):
            merge_from_dict({**base, "merges": [merge]})

    refused({"method": "task_arithmetic", "density": 0.5}, r"\.density: not a parameter of task_arithmetic \(its parameters: none\)")
    refused({"method": "dare", "energy": 0.5}, r"merges\[0\].energy: not a parameter of dare \(its parameters: density, combine\); move it")
    refused({"method": "ties", "scale": [1.0]}, r"unknown key merges\[0\].scale: valid keys here are \[.*'density'")
    refused({"method": "ties", "density": 1.5}, r"merges\[0\]: density: 1.5 must be in \(0, 1\]")
    refused({"method": "ties", "density": "half"}, r"merges\[0\].density: expected a number")
    refused({"method": "dare", "combine": "mean"}, r"combine: 'mean' is not linear or ties")
    refused({"method": "rtsvm", "energy": 0}, r"energy: 0 must be in \(0, 1\]")
    refused({"method": "rtsvm", "outlier_m": -1}, r"outlier_m: -1 must be positive")
    refused({"method": "ties", "density": 0.5, "label": 3}, r"merges\[0\].label: expected a string")
    cfg = merge_from_dict({**base, "merges": [{"method": "ties"}, {"method": "dare", "density": 0.3, "combine": "ties", "weights": [2]}]})
    assert [m.params for m in cfg.merges] == [TiesParams(0.5), DareParams(0.3, "ties")]
    assert [m.name(0.5) for m in cfg.merges] == ["ties λ=0.5", "dare λ=0.5 density=0.3 combine=ties w=2"]
    with pytest.raises(ConfigError, match="appears twice"):  # the default written out is the same merge
        merge_from_dict({**base, "merges": [{"method": "ties"}, {"method": "ties", "density": 0.5}]})

    g = torch.Generator().manual_seed(0)
    t, u = {"w": torch.randn(4, 5, generator=g), "v": torch.randn(3, 3, generator=g)}, {"w": torch.randn(4, 5, generator=g)}
    by_params = merge_deltas([t, u], [1.0, 2.0], "ties", params=TiesParams(0.3))
    assert all(torch.equal(by_params[k], merge_deltas([t, u], [1.0, 2.0], "ties", density=0.3)[k]) for k in ("w", "v"))
    with pytest.raises(DataError, match=r"tsvm.density: not a parameter of tsvm \(its parameters: none\)"):
        merge_deltas([t, u], [1.0, 1.0], "tsvm", density=0.5)
    with pytest.raises(DataError, match="ties takes TiesParams parameters, got DareParams"):
        merge_deltas([t, u], [1.0, 1.0], "ties", params=DareParams())
    with pytest.raises(DataError, match=r"density: 0 must be in \(0, 1\]"):
        merge_deltas([t, u], [1.0, 1.0], "dare", params=DareParams(density=0.0))
    with pytest.raises(DataError, match="not both"):
        merge_deltas([t, u], [1.0, 1.0], "ties", params=TiesParams(), density=0.5)


def test_a_resolved_merge_config_reloads_to_the_same_merges_and_keys():
    """`steertax compare` rebuilds a merge folder's interventions from its resolved config and matches them
    by store key: the flat form a config writes reloads to the same specs, names and keys."""
    from steertax.runners.merge import merge_setting

    cfg = merge_from_dict(
        {
            "specialists": [{"name": "a", "data": "harmless"}, {"name": "b", "data": "honest"}],
            "tasks": [{"name": "arc_easy"}],
            "merges": [
                {"method": "task_arithmetic", "scales": [0.5, 1.0]},
                {"method": "ties", "density": 0.3, "scales": [1.0], "label": "trim"},
                {"method": "dare", "density": 0.7, "combine": "ties", "weights": [1, 2]},
                {"method": "rtsvm", "outlier_m": 3, "energy": 0.8},
                {"method": "tsvm"},
                {"method": "ties", "density": 0.2, "weight_of": "b", "weight_grid": [2, 3]},
            ],
        }
    )
    resolved = yaml.safe_load(yaml.safe_dump({"config": cfg.to_dict()}, sort_keys=False, allow_unicode=True))
    assert resolved["config"]["merges"][2] == {
        "method": "dare", "density": 0.7, "combine": "ties", "scales": [1.0], "weights": [1.0, 2.0],
        "label": None, "weight_grid": None, "weight_of": None,
    }  # flat: the method's parameters beside the common keys
    again = merge_from_dict(resolved["config"])
    assert again.merges == cfg.merges and again.to_dict() == cfg.to_dict()

    def keys(c):
        return [merge_setting(m, ["a", "b"], ["ka", "kb"], c.seed).key for m in c.merges]

    assert keys(again) == keys(cfg) and len(set(keys(cfg))) == len(cfg.merges)
    assert [m.series() for m in again.merges] == [
        "task_arithmetic", "trim density=0.3", "dare density=0.7 combine=ties w=1,2", "rtsvm outlier_m=3 energy=0.8", "tsvm",
        "ties density=0.2 w=1,2", "ties density=0.2 w=1,3",
    ]


def test_each_merge_parameter_reaches_the_merged_weights(adapter, tmp_path):
    """A merge run's ``fill`` merges each spec with its own parameters (its cache key covers all of them):
    the same deltas as merge_deltas with those parameters, and specs differing in one parameter differ."""
    from steertax.runners.merge import merge_interventions

    _peft_adapter(tmp_path / "b", "llama", target_modules=["q_proj", "v_proj"])
    merges = [
        {"method": "ties", "density": 0.3},
        {"method": "ties", "density": 0.7},
        {"method": "dare", "density": 0.5},
        {"method": "dare", "density": 0.5, "combine": "ties"},
        {"method": "rtsvm"},
        {"method": "rtsvm", "energy": 0.5},
    ]
    cfg = merge_from_dict(
        {
            "specialists": [{"name": "a", "adapter": str(adapter)}, {"name": "b", "adapter": str(tmp_path / "b")}],
            "tasks": [{"name": "arc_easy"}],
            "merges": merges,
        }
    )
    model = tiny_model("llama", n_layers=2, seed=1)
    _, merge_ivs, made = merge_interventions(cfg, model, make_tokenizer(), tmp_path / "out", progress=False)
    deltas = [adapter_deltas(adapter, model), adapter_deltas(tmp_path / "b", model)]
    got = []
    for m, miv in zip(merges, merge_ivs, strict=True):
        made["fill"](miv)
        kw = {k: v for k, v in m.items() if k != "method"}
        want = merge_deltas(deltas, [1.0, 1.0], m["method"], **kw)
        assert all(torch.equal(miv.deltas[k], want[k]) for k in want), m
        got.append(miv.deltas)
    for i in range(0, len(got), 2):  # one parameter changed: other merged weights
        assert any(not torch.equal(got[i][k], got[i + 1][k]) for k in got[i]), merges[i + 1]
