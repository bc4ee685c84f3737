"""The trained methods added as one file each (ORPO, KTO, curriculum alignment, data quality) on a tiny
random-init model: each trains through trl, does what its declaration says (rows, knob, checkpoints, anchor),
and lands in the run manifest on its own curve; bad parameters are one line before any model loads."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from conftest import B_AXIS, ONE_AXIS, make_tokenizer, tiny_model
from steertax.cli import main
from steertax.errors import ConfigError
from steertax.interventions.core import description_hash
from steertax.manifest import read_manifest
from steertax.runners.align import AlignSetting, align_from_dict, align_manifest, run_align
from steertax.training import TRAINED_METHODS, LoraSettings, RowsContext, TrainSettings, preference_data, train_setting
from steertax.training.curriculum import reference_margins
from steertax.training.data import chat_rows
from steertax.training.data_quality import flipped
from steertax.training.orpo import orpo_classes
from steertax.training.trainer import checkpoint_dir, checkpoint_steps

LORA = LoraSettings(r=4, alpha=8, targets=["q_proj", "v_proj"])
TRAIN = TrainSettings(steps=4, lr=1e-2, batch_size=4, max_length=96, warmup_steps=0)


def _adapter(path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def _ctx(model, tok, tmp_path, n=8):
    cfg = align_from_dict({"data": {"pairs": "refusal", "n_pairs": n}, "settings": [{"method": "dpo"}], "tasks": [{"name": "arc_easy"}]})
    return RowsContext(cfg.data, TRAIN, 0, "tiny", model, tok, tmp_path)


def test_every_method_declares_its_parameters_knob_and_family():
    """The registry is the one list of trained methods; each declares its parameter dataclass (with help text)."""
    assert {"dpo", "dpo_reg", "sft", "selective", "orpo", "kto", "curriculum", "data_quality"} <= set(TRAINED_METHODS)
    for m in TRAINED_METHODS.values():
        import dataclasses

        for f in dataclasses.fields(m.params):
            assert f.metadata.get("help"), (m.name, f.name)
    assert TRAINED_METHODS["dpo"].knob.axis == "inverse" and TRAINED_METHODS["kto"].knob.axis == "inverse"
    assert TRAINED_METHODS["orpo"].knob.base is None and TRAINED_METHODS["orpo"].knob.why  # β = 0 is SFT, not the base
    assert TRAINED_METHODS["data_quality"].knob.base is None and TRAINED_METHODS["data_quality"].knob.axis is None
    assert TRAINED_METHODS["curriculum"].checkpoints == (0.25, 0.5, 0.75, 1.0) and TRAINED_METHODS["curriculum"].knob.base == 0.0
    # two β of a new method are two settings (not one name), and a parameter another method owns is refused
    assert AlignSetting.of("orpo", beta=0.1).name() != AlignSetting.of("orpo", beta=0.5).name()
    with pytest.raises(ConfigError, match=r"density: not a parameter of dpo \(its parameters: beta\)"):
        AlignSetting.of("dpo", beta=0.1, density=0.5)


def test_orpo_trains_through_trl_experimental_without_its_notice(tmp_path):
    """ORPO lives under trl.experimental in the locked trl: what steertax relies on (ORPOConfig.beta, the trainer's
    keyword arguments) is pinned here, and its import-time notice does not reach the user."""
    import inspect

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cfg_cls, trainer_cls = orpo_classes()
    assert not [w for w in seen if "experimental" in str(w.message)]
    assert "beta" in {f.name for f in __import__("dataclasses").fields(cfg_cls)}
    assert {"model", "args", "train_dataset", "processing_class"} <= set(inspect.signature(trainer_cls.__init__).parameters)
    model, tok = tiny_model("llama", n_layers=2, seed=1), make_tokenizer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = TrainSettings(steps=4, lr=1e-2, batch_size=4, max_length=512, warmup_steps=0)  # ORPO keeps prompt and answer whole
    info = train_setting(model, tok, AlignSetting.of("orpo", beta=0.2), preference_data("refusal", 8), tmp_path / "o",
                         lora=LORA, train=train, progress=False)
    assert len(info["history"]) == 4 and all(torch.isfinite(torch.tensor(h["loss"])) for h in info["history"])
    assert any(float(t.abs().max()) > 0 for k, t in _adapter(tmp_path / "o").items() if "lora_B" in k)  # it learned
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the base is left unchanged


def test_kto_trains_on_unpaired_rows_with_their_labels(tmp_path):
    """KTO's rows are the pairs unpaired (chosen desirable, rejected not); the label column reaches the trainer."""
    model, tok = tiny_model("llama", n_layers=2, seed=1), make_tokenizer()
    s = AlignSetting.of("kto", beta=0.1)
    rows = s.spec.rows(_ctx(model, tok, tmp_path, 4), s)
    assert len(rows) == 8 and [r["label"] for r in rows[:2]] == [True, False]
    pairs = preference_data("refusal", 4)
    assert rows[0]["completion"] == pairs[0]["chosen"] and rows[1]["completion"] == pairs[0]["rejected"]
    assert [r["label"] for r in chat_rows(tok, rows, s.spec.columns)] == [r["label"] for r in rows]
    train = TrainSettings(steps=4, lr=1e-2, batch_size=4, max_length=512, warmup_steps=0)  # whole rows (a byte-level tokenizer)
    info = train_setting(model, tok, s, rows, tmp_path / "k", lora=LORA, train=train, progress=False)
    assert len(info["history"]) == 4 and info["n_rows_trained"] == 8
    # a label file: each row's own label
    f = tmp_path / "kto.jsonl"
    f.write_text("\n".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}", "label": i % 3 == 0}) for i in range(6)) + "\n")
    s2 = AlignSetting.of("kto", beta=0.1, labels=str(f))
    assert [r["label"] for r in s2.spec.rows(_ctx(model, tok, tmp_path, 8), s2)] == [True, False, False, True, False, False]
    bad = tmp_path / "nolabel.jsonl"
    bad.write_text('{"prompt": "q", "completion": "a"}\n')
    with pytest.raises(ConfigError, match="label"):
        AlignSetting.of("kto", beta=0.1, labels=str(bad))


def test_curriculum_orders_pairs_by_the_reference_margin_and_saves_checkpoints(tmp_path):
    """easy_first: the same pairs as shuffled, sorted by log P(chosen) − log P(rejected) under the base, largest first;
    one run saves the adapter at ¼, ½ and ¾ of its steps, each a different point of one curve."""
    model, tok = tiny_model("llama", n_layers=2, seed=1), make_tokenizer()
    ctx = _ctx(model, tok, tmp_path, 64)
    easy, mixed = AlignSetting.of("curriculum", order="easy_first"), AlignSetting.of("curriculum", order="shuffled")
    a, b = easy.spec.rows(ctx, easy), mixed.spec.rows(ctx, mixed)
    assert len(a) == TRAIN.steps * TRAIN.batch_size == 16  # exactly the pairs the run sees
    assert sorted(map(json.dumps, a)) == sorted(map(json.dumps, b)) and a != b  # same pairs, other order
    m = reference_margins(model, tok, a)
    assert m == sorted(m, reverse=True) and m[0] > m[-1]
    assert checkpoint_steps((0.25, 0.5, 0.75, 1.0), 4) == {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}
    with pytest.raises(ConfigError, match="same step"):
        checkpoint_steps((0.25, 0.5, 0.75, 1.0), 2)
    info = train_setting(model, tok, easy, a, tmp_path / "c", lora=LORA, train=TRAIN, progress=False)
    assert info["checkpoints"] == {"0.25": 1, "0.5": 2, "0.75": 3, "1": 4}
    saved = [_adapter(checkpoint_dir(tmp_path / "c", c)) for c in (0.25, 0.5, 0.75)] + [_adapter(tmp_path / "c")]
    for x, y in zip(saved, saved[1:], strict=False):
        assert any(not torch.equal(x[k], y[k]) for k in x)  # training moved on between checkpoints


def test_data_quality_flips_a_seeded_fraction_and_is_refused_outside_0_1():
    rows = preference_data("refusal", 40)
    for f in (0.0, 0.1, 0.25, 0.5):
        got = flipped(rows, f, 0)
        swapped = [g["chosen"] == r["rejected"] and g["rejected"] == r["chosen"] for g, r in zip(got, rows, strict=True)]
        assert sum(swapped) == round(f * 40) and all(g["prompt"] == r["prompt"] for g, r in zip(got, rows, strict=True))
    assert flipped(rows, 0.25, 0) == flipped(rows, 0.25, 0) and flipped(rows, 0.0, 0) == rows
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match=r"flip: .* must be in \[0, 1\)"):
            AlignSetting.of("data_quality", flip=bad)


def test_the_manifest_places_each_setting_on_its_declared_curve(tmp_path):
    """From the declarations alone: DPO ends regularized DPO's λ curve (λ = 0) and starts data quality's f curve
    (f = 0); the curriculum's checkpoints are its curve along the share of training; ORPO's β curve does not start at
    the base. No label is parsed (labels given here are arbitrary)."""
    cfg = align_from_dict({
        "settings": [{"method": "dpo", "beta": 0.1, "label": "A"}, {"method": "dpo_reg", "beta": 0.1, "lambda": 1.0, "label": "B"},
                     {"method": "data_quality", "beta": 0.1, "flip": 0.25, "label": "C"}, {"method": "curriculum", "label": "D"},
                     {"method": "orpo", "beta": 0.1}, {"method": "orpo", "beta": 1.0}],
        "tasks": [{"name": "arc_easy", "limit": 4}],
    })
    man = align_manifest(cfg, "align-x", tmp_path)
    pts = {f.name: [(r.label, v) for _, r, v in man.points(f.name)] for f in man.families}
    assert pts["dpo"] == [("A", 0.1)]
    assert pts["dpo_reg beta=0.1"] == [("B", 1.0), ("A", 0.0)]  # from the base (λ → ∞) to DPO (λ = 0)
    assert pts["data_quality beta=0.1"] == [("A", 0.0), ("C", 0.25)]
    assert pts["curriculum beta=0.1 order=easy_first"] == [("D share=0.25", 0.25), ("D share=0.5", 0.5), ("D share=0.75", 0.75), ("D", 1.0)]
    assert man.family("orpo").knob.base is None and pts["orpo"] == [("orpo beta=0.1", 0.1), ("orpo beta=1", 1.0)]


def test_curriculum_and_data_quality_run_through_align_and_compare(tmp_path):
    """End to end on a tiny model: the curves reach compare.json with their knobs; the f curve is not fitted (its
    reason comes from the declaration) and the share curve is compared at matched ΔB like any other."""
    from steertax.runners.compare import compare

    tiny_dir = tmp_path / "tiny"
    tiny_model("llama", n_layers=2, seed=1).save_pretrained(tiny_dir)
    make_tokenizer().save_pretrained(tiny_dir)
    cfg = align_from_dict({
        "model": str(tiny_dir), "seed": 0, "chunk": 4, "batch_size": 8,
        "data": {"pairs": "refusal", "n_pairs": 16}, "lora": {"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
        "train": {"steps": 4, "lr": 0.01, "batch_size": 4, "max_length": 96, "warmup_steps": 0},
        "settings": [{"method": "dpo", "beta": 0.1}, {"method": "data_quality", "beta": 0.1, "flip": 0.5},
                     {"method": "curriculum", "beta": 0.1}],
        "tasks": [{"name": "refusal", "limit": 8, "options": {"scorers": ["logprob"]}}, {"name": "arc_easy", "limit": 8},
                  {"name": "over_refusal", "limit": 4, "options": {"scorers": ["generate"], "max_new_tokens": 4}}],
    })
    summary = run_align(cfg, tmp_path / "a", progress=False)
    man = read_manifest(tmp_path / "a")
    assert man.kind == "align" and len(man.entries) == 1 + 1 + 1 + 4
    want = {"curriculum beta=0.1 order=easy_first share=0.5", "data_quality beta=0.1 flip=0.5"}
    assert {r["setting"] for r in summary["settings"]} >= want
    res = compare([tmp_path / "a"], tmp_path / "cmp", **ONE_AXIS, n_boot=100, progress=False)
    by = {m["kind"]: m for m in res["methods"]}
    assert [p["value"] for p in by["curriculum beta=0.1 order=easy_first"]["points"]] == [None, 0.25, 0.5, 0.75, 1.0]
    assert [p["value"] for p in by["data_quality beta=0.1"]["points"]] == [None, 0.0, 0.5]
    assert by["data_quality beta=0.1"]["knob"] == "f"
    assert not by["data_quality beta=0.1"]["laws"]["fitted"] and "DPO itself" in by["data_quality beta=0.1"]["laws"]["reason"]
    judged = summary["settings"][1]["tasks"]["over_refusal"]["judged"]  # every judged rate with its judges' agreement
    assert judged["agreement"]["n"] == 4 and judged["agreement"]["second_judge"] == "paper_keyword" and 0 <= judged["degenerate"] <= 1
    assert "Judged answers" in (tmp_path / "a" / "table.md").read_text()
    flu = compare([tmp_path / "a"], tmp_path / "cmp-flu", **B_AXIS, helpfulness="over_refusal[generate]:fluency", n_boot=100,
                  progress=False)
    assert flu["helpfulness"] == "over_refusal[generate]:fluency" and len(flu["methods"]) == len(res["methods"])
    assert judged["by_strength"][0]["base_logprob"] < 0  # the trained setting's answers read under the base model
    lp = compare([tmp_path / "a"], tmp_path / "cmp-lp", **B_AXIS, helpfulness="over_refusal[generate]:base_logprob", n_boot=100,
                 progress=False)
    assert lp["helpfulness"] == "over_refusal[generate]:base_logprob" and len(lp["methods"]) == len(res["methods"])


@pytest.mark.parametrize("setting, says", [
    ({"method": "nope"}, "'nope' is not one of the trained methods"),
    ({"method": "dpo", "beta": 0.1, "density": 0.5}, "density: not a parameter of dpo (its parameters: beta)"),
    ({"method": "data_quality", "flip": 1.0}, "flip: 1.0 must be in [0, 1)"),
    ({"method": "curriculum", "order": "hard_first"}, "order: 'hard_first' is not one of easy_first, shuffled"),
    ({"method": "kto", "labels": "{nolabels}"}, "column 'label' must be true or false"),
])
def test_bad_settings_are_one_line_before_the_model_loads(tmp_path, capsys, setting, says):
    bad = tmp_path / "nolabels.jsonl"
    bad.write_text('{"prompt": "q", "completion": "a"}\n')
    setting = {k: (v.format(nolabels=bad) if isinstance(v, str) else v) for k, v in setting.items()}
    cfg = tmp_path / "a.yaml"
    cfg.write_text(json.dumps({"model": "no-such-model-is-loaded", "settings": [setting], "tasks": [{"name": "arc_easy"}]}))
    assert main(["--quiet", "align", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["run", "align", "merge"])
@pytest.mark.parametrize("text, says", [("", "is empty"), ("- a\n- b\n", "must be a YAML mapping"), ("7\n", "must be a YAML mapping")])
def test_empty_or_non_mapping_configs_are_one_line(tmp_path, capsys, command, text, says):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main(["--quiet", command, str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and f"steertax {command} --print-default-config" in err[0], err


def test_training_precision_is_bf16_only_where_the_device_computes_it_natively(monkeypatch, tmp_path):
    """trl trains in bf16 by default; on a CPU without native bf16 (AVX2) that takes a scalar matmul ~20x slower, so
    `train.precision: auto` resolves per machine, the adapter's key records what it resolved to, and an explicit
    precision is kept."""
    from steertax.training.settings import resolved_precision

    if torch.cuda.is_available():
        pytest.skip("this checks the CPU resolution")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert resolved_precision("auto") == "fp32" and resolved_precision("bf16") == "bf16"
    cfg = align_from_dict({"settings": [{"method": "dpo"}], "tasks": [{"name": "arc_easy"}]})
    fp32 = cfg.training_spec(cfg.settings[0])
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert resolved_precision("auto") == "bf16"
    bf16 = cfg.training_spec(cfg.settings[0])
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert description_hash(fp32, 12) != description_hash(bf16, 12)  # a bf16 adapter never stands in for an fp32 one
    with pytest.raises(ConfigError, match="train.precision: 'fp8' is not one of auto, bf16, fp32"):
        align_from_dict({"train": {"precision": "fp8"}, "settings": [{"method": "dpo"}], "tasks": [{"name": "arc_easy"}]})
    model, tok = tiny_model("llama", n_layers=2, seed=1), make_tokenizer()
    info = train_setting(model, tok, AlignSetting.of("dpo"), preference_data("refusal", 4), tmp_path / "a", lora=LORA,
                         train=TrainSettings(steps=1, batch_size=4, max_length=512, warmup_steps=0, precision="fp32"), progress=False)
    assert info["precision"] == "fp32"
