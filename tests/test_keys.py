"""Store keys cannot go stale: every field of every kind of intervention that can change a result changes
its key, and a changed training setting rerun into the same folder stores (and reports) the new adapter's
rows, not the old ones."""
from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from conftest import make_tokenizer, tiny_model
from steertax import interventions as I
from steertax.interventions.conditional import Condition
from steertax.interventions.merge import MERGE_REGISTRY, MergedIntervention
from steertax.interventions.steering.vectors import SteeringVector
from steertax.runners.align import (
    TRAINED_METHODS,
    AlignConfig,
    AlignSetting,
    LoraSettings,
    TrainSettings,
    align_from_dict,
    register_trained_method,
    run_align,
)
from steertax.runners.merge import merge_spec as _merge_spec
from steertax.runners.merge_config import MergeSpec
from steertax.store import ResultStore


def _vec(seed=0, layers=(1, 2)):
    g = torch.Generator().manual_seed(seed)
    dirs = {k: torch.nn.functional.normalize(torch.randn(16, generator=g), dim=0) for k in layers}
    return SteeringVector(dirs, model_id="tiny", hidden_size=16, num_layers=4, method="pca")


def _cond(**over):
    kw = dict(direction=torch.nn.functional.normalize(torch.ones(16), dim=0), layer=0, threshold=0.1, comparator=">",
              model_id="tiny", hidden_size=16)
    kw.update(over)
    return Condition(**kw)


def test_steering_key_covers_vector_layers_and_condition():
    base = I.SteeringIntervention(_vec(), [0.0, 1.0])
    keys = {base.key}
    for other in (
        I.SteeringIntervention(_vec(seed=1), [0.0, 1.0]),  # another direction
        I.SteeringIntervention(_vec(layers=(1, 3)), [0.0, 1.0]),  # other layers
        I.SteeringIntervention(_vec(), [0.0, 1.0], _cond()),  # conditional
        I.SteeringIntervention(_vec(), [0.0, 1.0], _cond(threshold=0.2)),
        I.SteeringIntervention(_vec(), [0.0, 1.0], _cond(layer=1)),
        I.SteeringIntervention(_vec(), [0.0, 1.0], _cond(comparator="<")),
        I.SteeringIntervention(_vec(), [0.0, 1.0], _cond(read="last")),
        I.SteeringIntervention(_vec(), [0.0, 1.0], _cond(direction=torch.nn.functional.normalize(torch.arange(16.0), dim=0))),
    ):
        assert other.key not in keys, other.describe()
        keys.add(other.key)
    # the grid is the knob (each row records its strength), not part of the key; the method column says conditional
    assert I.SteeringIntervention(_vec(), [0.0, 2.0, 4.0]).key == base.key
    assert I.SteeringIntervention(_vec(), [0.0], _cond()).method == "conditional" and base.method == "steering"


def test_every_training_field_changes_an_adapters_key(tmp_path):
    d = tmp_path / "ad"
    d.mkdir()
    (d / "adapter_config.json").write_text('{"r": 4, "target_modules": ["q_proj", "v_proj"]}')
    (d / "adapter_model.safetensors").write_bytes(b"weights")
    cfg = align_from_dict({"settings": [{"method": "dpo", "beta": 0.1}], "tasks": [{"name": "arc_easy", "limit": 4}]})

    def key(c: AlignConfig, s=None) -> str:
        s = s or c.settings[0]
        return I.AdapterIntervention(d, s.method, s.name(), c.training_spec(s)).key

    k0 = key(cfg)
    (d / "adapter_config.json").write_text('{"target_modules": ["v_proj", "q_proj"], "r": 4}')  # peft's set order varies
    assert key(cfg) == k0
    edits = {
        "train.lr": lambda c: setattr(c.train, "lr", 1e-3),
        "train.steps": lambda c: setattr(c.train, "steps", 3),
        "train.batch_size": lambda c: setattr(c.train, "batch_size", 2),
        "train.max_length": lambda c: setattr(c.train, "max_length", 64),
        "train.warmup_steps": lambda c: setattr(c.train, "warmup_steps", 0),
        "lora.r": lambda c: setattr(c.lora, "r", 8),
        "lora.alpha": lambda c: setattr(c.lora, "alpha", 4),
        "lora.dropout": lambda c: setattr(c.lora, "dropout", 0.1),
        "lora.targets": lambda c: setattr(c.lora, "targets", ["q_proj"]),
        "data.pairs": lambda c: setattr(c.data, "pairs", str(tmp_path / "prefs.jsonl")),
        "data.n_pairs": lambda c: setattr(c.data, "n_pairs", 10),
        "model": lambda c: setattr(c, "model", "qwen2.5-coder-0.5b"),
        "dtype": lambda c: setattr(c, "dtype", "bfloat16"),
        "seed": lambda c: setattr(c, "seed", 1),
        "setting.beta": lambda c: setattr(c.settings[0].params, "beta", 0.5),
        "setting.method": lambda c: c.settings.__setitem__(0, AlignSetting.of("dpo_reg", beta=c.settings[0].params.beta)),
        "setting.lam": lambda c: c.settings.__setitem__(0, AlignSetting.of("dpo_reg", beta=c.settings[0].params.beta, lam=1.0)),
        "setting.lr_factor": lambda c: setattr(c.settings[0], "lr_factor", 0.5),
        "setting.steps": lambda c: setattr(c.settings[0], "steps", 2),
        "quick": lambda c: setattr(c, "quick", True),
    }
    seen = {k0}
    for field, edit in edits.items():
        c = copy.deepcopy(cfg)
        edit(c)
        k = key(c)
        assert k not in seen, field
        seen.add(k)
    # the preservation answers shape selective alignment only: its key changes with them, DPO's does not
    sel = AlignSetting.of("selective", beta=0.1, lr_factor=0.5)
    for edit in (lambda c: setattr(c.data, "n_preserve", 3), lambda c: setattr(c.data, "preserve_tokens", 9)):
        c = copy.deepcopy(cfg)
        edit(c)
        assert key(c) == k0 and key(c, sel) != key(cfg, sel)
    # the preference file's content, not just its name
    (tmp_path / "prefs.jsonl").write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n')
    c = copy.deepcopy(cfg)
    c.data.pairs = str(tmp_path / "prefs.jsonl")
    k1 = key(c)
    (tmp_path / "prefs.jsonl").write_text('{"prompt": "p", "chosen": "c2", "rejected": "r"}\n')
    assert key(c) != k1
    # the adapter's own files
    (d / "adapter_model.safetensors").write_bytes(b"other weights")
    assert key(cfg) != k0
    seen.add(key(cfg))
    # the version of the trainer's code and of the adapter intervention's
    old = TRAINED_METHODS["dpo"]
    TRAINED_METHODS["dpo"] = dataclasses.replace(old, version=old.version + 1)
    try:
        assert key(cfg) not in seen
    finally:
        TRAINED_METHODS["dpo"] = old
    I.INTERVENTIONS["adapter"] += 1
    try:
        assert key(cfg) not in seen
    finally:
        I.INTERVENTIONS["adapter"] -= 1


def test_every_merge_field_changes_a_merges_key():
    names, spec_keys = ["harmless", "helpful"], ["k1", "k2"]

    def key(m: MergeSpec, lam=1.0, keys=spec_keys, seed=0) -> str:
        return MergedIntervention({}, lam, m.method, m.name(lam), _merge_spec(m, names, keys, seed)).key

    m0 = MergeSpec.of("dare")
    seen = {key(m0)}
    variants = [
        key(dataclasses.replace(m0, weights=[2.0, 1.0])),
        key(m0, lam=0.5),
        key(m0, keys=["k1", "k3"]),  # a specialist retrained
        key(m0, seed=1),  # DARE's drops
    ]
    # every parameter of every method (a value other than its default), each in a spec of its own method
    changed = {"density": 0.7, "combine": "ties", "outlier_m": 3.0, "energy": 0.8}
    for name, spec in MERGE_REGISTRY.items():
        base = MergeSpec.of(name)
        if name != "dare":  # another method
            variants.append(key(base))
        for f in dataclasses.fields(spec.params):
            variants.append(key(dataclasses.replace(base, params=dataclasses.replace(base.params, **{f.name: changed[f.name]}))))
    for k in variants:
        assert k not in seen  # no two collide: a parameter change of one method never gives another's key
        seen.add(k)
    MERGE_REGISTRY["dare"] = dataclasses.replace(MERGE_REGISTRY["dare"], version=MERGE_REGISTRY["dare"].version + 1)
    try:
        assert key(m0) not in seen
    finally:
        MERGE_REGISTRY["dare"] = dataclasses.replace(MERGE_REGISTRY["dare"], version=MERGE_REGISTRY["dare"].version - 1)


def test_base_is_the_identity_and_store_keys_come_from_one_function():
    model = tiny_model("llama", n_layers=2, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with I.BaseIntervention().apply(model) as a:
        assert a.model is model and a.vector is None and a.strengths == [0.0] and not a.weights_modified
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    b = I.BaseIntervention()
    assert I.store_key("run-a", b) != I.store_key("run-b", b)
    assert I.store_key("run-a", b).startswith("run-a|base|base|")
    assert I.store_key("run-a", b) == I.store_key("run-a", I.BaseIntervention())


# ---------------------------------------------------------------------------- the stale-row case


def _align_cfg(tiny_dir, lr: float):
    return align_from_dict({
        "model": str(tiny_dir), "seed": 0, "chunk": 4, "batch_size": 8,
        "data": {"pairs": "refusal", "n_pairs": 8},
        "lora": {"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
        "train": {"steps": 4, "lr": lr, "batch_size": 4, "max_length": 96, "warmup_steps": 0},
        "settings": [{"method": "dpo", "beta": 0.1}],
        "tasks": [{"name": "arc_easy", "limit": 8}],
    })


def _setting_rows(out, summary, method="dpo"):
    key = next(r["key"] for r in summary["settings"] if r["method"] == method)
    with ResultStore(out / "results.sqlite") as s:
        return s.records(key)


def test_a_changed_training_setting_rerun_into_the_same_folder_is_evaluated(tmp_path):
    """Edit train.lr and rerun into the same folder: the new adapter is trained *and evaluated*; the summary
    describes it (its rows equal a fresh run's with the new lr), not the old adapter's rows."""
    tiny = tmp_path / "tiny"
    tiny_model("llama", n_layers=2, seed=1).save_pretrained(tiny)
    make_tokenizer().save_pretrained(tiny)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    old = run_align(_align_cfg(tiny, 0.01), out, progress=False)
    new = run_align(_align_cfg(tiny, 0.2), out, progress=False)
    ref = run_align(_align_cfg(tiny, 0.2), fresh, progress=False)
    old_rows, new_rows, ref_rows = _setting_rows(out, old), _setting_rows(out, new), _setting_rows(fresh, ref)
    assert old_rows != ref_rows  # the lr matters, so the test can tell the adapters apart
    assert new_rows == ref_rows
    dpo = next(r for r in new["settings"] if r["method"] == "dpo")
    assert dpo["training"]["lr"] == pytest.approx(0.2)
    assert dpo["tasks"]["arc_easy"]["value"] == next(r for r in ref["settings"] if r["method"] == "dpo")["tasks"]["arc_easy"]["value"]
    assert json.loads((out / "summary.json").read_text())["settings"][1]["key"] == dpo["key"]


def test_a_trained_method_is_one_function_and_its_registration(tmp_path):
    """A new trained method registered by name, with its own parameters, is accepted by the config and trains
    through the same path (here: DPO at twice the setting's beta, a real variant), with its own version in every
    adapter's key."""
    from steertax.runners.align import AlignSetting, preference_data, train_setting
    from steertax.training.dpo import DPOParams, dpo_trainer

    @register_trained_method("dpo_2beta", version=3, params=DPOParams)
    def _build(setting, peft_model, tokenizer, ds, common):
        return dpo_trainer(peft_model, tokenizer, ds, common, 2 * setting.params.beta)

    try:
        cfg = align_from_dict({"settings": [{"method": "dpo_2beta", "beta": 0.1}], "tasks": [{"name": "arc_easy", "limit": 4}]})
        assert cfg.training_spec(cfg.settings[0])["trainer_version"] == 3
        model, tok = tiny_model("llama", n_layers=2, seed=1), make_tokenizer()
        info = train_setting(model, tok, AlignSetting.of("dpo_2beta", beta=0.25), preference_data("refusal", 4), tmp_path / "a",
                             lora=LoraSettings(r=2, alpha=4, targets=["q_proj"]),
                             train=TrainSettings(steps=2, lr=1e-2, batch_size=2, max_length=96, warmup_steps=0), progress=False)
        assert len(info["history"]) == 2 and (tmp_path / "a" / "adapter_model.safetensors").is_file()
    finally:
        del TRAINED_METHODS["dpo_2beta"]
