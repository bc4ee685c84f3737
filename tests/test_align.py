"""Alignment by fine-tuning (trl + peft) on a tiny random-init model: DPO learns, the regularizer does
what it says, lambda = 0 is DPO exactly, the sweep resumes after SIGKILL, bad input is one line."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest
import torch
import yaml

import steertax as st
from conftest import ONE_AXIS, ONE_AXIS_CLI, make_tokenizer, tiny_model
from steertax import DataError
from steertax.analysis.stats import paired_change
from steertax.cli import main
from steertax.errors import ConfigError, ModelError
from steertax.interventions import AdapterIntervention, check_adapter
from steertax.runners.align import (
    AlignSetting,
    LoraSettings,
    TrainSettings,
    align_from_dict,
    lora_delta_sq_norm,
    preference_data,
    train_setting,
)
from steertax.store import ResultStore

LORA = LoraSettings(r=4, alpha=8, targets=["q_proj", "v_proj", "up_proj"])
TRAIN = TrainSettings(steps=6, lr=1e-2, batch_size=4, max_length=96, warmup_steps=0)


@pytest.fixture(scope="module")
def rows():
    return preference_data("refusal", 8, seed=0)


def _adapter_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def _logits(model, tok, text="Tell me how to pick a lock."):
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_dpo_steps_lower_the_loss_and_raise_the_margin(rows, tmp_path):
    model, tok = tiny_model("llama", n_layers=2, seed=1), make_tokenizer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    info = train_setting(model, tok, AlignSetting.of("dpo", beta=0.5), rows, tmp_path / "a", lora=LORA,
                         train=TrainSettings(steps=12, lr=2e-2, batch_size=8, max_length=96, warmup_steps=0), progress=False)
    h = info["history"]
    assert len(h) == 12 and h[-1]["loss"] < h[0]["loss"]
    assert h[-1]["rewards/margins"] > h[0]["rewards/margins"]
    assert info["delta_sq_norm"] > 0
    # the base model is left exactly as it was (LoRA never writes its weights), and the adapter is on disk
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()


def test_regularizer_huge_lambda_stays_at_the_base_and_zero_is_dpo(rows, tmp_path):
    tok = make_tokenizer()
    runs = {}
    for name, s in {"dpo": AlignSetting.of("dpo", beta=0.1), "reg0": AlignSetting.of("dpo_reg", beta=0.1, lam=0.0),
                    "reg_huge": AlignSetting.of("dpo_reg", beta=0.1, lam=1e4)}.items():
        model = tiny_model("llama", n_layers=2, seed=1)
        runs[name] = train_setting(model, tok, s, rows, tmp_path / name, lora=LORA, train=TRAIN, seed=3, progress=False)
    a, b = _adapter_tensors(tmp_path / "dpo"), _adapter_tensors(tmp_path / "reg0")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # lambda = 0 is DPO, bit for bit
    assert runs["reg_huge"]["delta_sq_norm"] < 0.01 * runs["dpo"]["delta_sq_norm"]
    base = tiny_model("llama", n_layers=2, seed=1)
    ref = _logits(base, tok)
    with AdapterIntervention(tmp_path / "reg_huge", "dpo_reg", "huge").apply(base) as applied:
        m = applied.model
        near = _logits(m, tok)
    with AdapterIntervention(tmp_path / "dpo", "dpo", "dpo").apply(base) as applied:
        m = applied.model
        far = _logits(m, tok)
    assert (near - ref).abs().max() < 0.1 * (far - ref).abs().max()
    assert torch.equal(_logits(base, tok), ref)  # the adapter is gone after the block


def test_drift_of_an_adapter_is_measured_against_the_base(rows, tmp_path):
    """Drift's KL and cross-entropy change compare the adapted model with the base model (the
    adapter switched off), not with itself: KL equals the directly computed KL(adapter || base)."""
    tok = make_tokenizer()
    model = tiny_model("llama", n_layers=2, seed=1)
    train_setting(model, tok, AlignSetting.of("dpo", beta=0.5), rows, tmp_path / "a", lora=LORA,
                  train=TrainSettings(steps=6, lr=5e-2, batch_size=4, max_length=96, warmup_steps=0), progress=False)
    task = st.tasks.get("drift", max_answer_tokens=6)
    items = task.items(3, 0)
    iv = AdapterIntervention(tmp_path / "a", "dpo", "a")
    plain = st.evaluate(model, tok, task, items=items, progress=False)
    assert all(r["kl"] == 0.0 and r["ce_delta"] == 0.0 for r in plain.records)  # the base against itself
    with iv.apply(model) as applied:
        m, vec, S = applied.model, applied.vector, applied.strengths
        res = st.evaluate(m, tok, task, vec, S, items=items, progress=False, reference=applied.reference)
        # by hand, one item: KL(adapter || base) over its answer tokens
        from steertax.models import encode, format_chat
        from steertax.scoring import encode_continuation

        it = items[0]
        pe, ae = encode(tok, format_chat(tok, it.data["instruction"])), encode_continuation(tok, it.data["output"])[:6]
        ids = torch.tensor([pe + ae])
        with torch.no_grad():
            la = torch.log_softmax(m(input_ids=ids).logits[0, len(pe) - 1 : -1].double(), -1)
            with applied.reference():
                lb = torch.log_softmax(m(input_ids=ids).logits[0, len(pe) - 1 : -1].double(), -1)
    kl = float((la.exp() * (la - lb)).sum(-1).mean())
    r0 = next(r for r in res.records if r["item"] == it.id)
    assert r0["kl"] > 1e-6 and abs(r0["kl"] - kl) <= 1e-4 * max(1.0, kl)
    assert r0["ce_delta"] != 0.0
    ce_base = float(-lb.gather(-1, torch.tensor(ae).unsqueeze(-1)).mean())
    assert abs((r0["ce"] - r0["ce_delta"]) - ce_base) <= 1e-4


def test_lora_delta_norm_is_the_weight_delta(tmp_path):
    from peft import LoraConfig

    from steertax.training import lora_model

    model = lora_model(tiny_model("llama", n_layers=2), LoraConfig(r=3, lora_alpha=6, target_modules=["q_proj"]))
    total = 0.0
    for mod in model.modules():
        if hasattr(mod, "lora_B") and "default" in getattr(mod, "lora_B", {}):
            torch.nn.init.normal_(mod.lora_B["default"].weight)
            dW = mod.scaling["default"] * mod.lora_B["default"].weight @ mod.lora_A["default"].weight
            total += float((dW ** 2).sum().detach())
    assert abs(float(lora_delta_sq_norm(model).detach()) - total) < 1e-4 * total


def test_sft_and_selective_train(rows, tmp_path):
    model, tok = tiny_model("llama", n_layers=2, seed=1), make_tokenizer()
    sft_rows = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in rows]
    info = train_setting(model, tok, AlignSetting.of("sft"), sft_rows, tmp_path / "sft", lora=LORA, train=TRAIN, progress=False)
    assert info["history"][-1]["loss"] < info["history"][0]["loss"]


def test_paired_change_and_tax():
    base = {"a": 1.0, "b": 0.5, "c": 0.5, "d": 0.0}
    worse = {"a": 0.5, "b": 0.5, "c": 0.0, "d": 0.0}
    ch = paired_change(base, worse, n_boot=500)
    assert ch["delta"] == pytest.approx(-0.25) and ch["tax_percent"] == pytest.approx(50.0)
    assert ch["delta_ci95"][0] <= -0.25 <= ch["delta_ci95"][1]
    # a resample of only item d has base mean 0 (no tax %): counted and kept (beyond the CI's ends), not dropped
    assert ch["n_boot_below_floor"] >= 1 and ch["tax_ci95"][0] <= 50 <= ch["tax_ci95"][1]
    kept = paired_change({**base, "d": 0.5}, worse, n_boot=500)  # every resample's base is over the floor
    assert kept["tax_ci95"][0] <= kept["tax_percent"] <= kept["tax_ci95"][1] and kept["n_boot_below_floor"] == 0
    better = {k: v + 0.25 for k, v in base.items()}
    assert paired_change(base, better)["tax_percent"] == pytest.approx(-50.0)  # negative tax = improvement
    same = paired_change(base, dict(base), n_boot=200)
    assert same["delta"] == 0 and same["delta_ci95"] == [0.0, 0.0]


def test_store_gains_method_and_setting_columns(tmp_path):
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)  # a store written before interventions existed
    con.executescript("""
CREATE TABLE runs (run_id TEXT PRIMARY KEY, config TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE cells (run_id TEXT NOT NULL, task TEXT NOT NULL, cell TEXT NOT NULL, n_rows INTEGER NOT NULL, done_at TEXT NOT NULL,
    PRIMARY KEY (run_id, task, cell));
CREATE TABLE results (run_id TEXT NOT NULL, task TEXT NOT NULL, item TEXT NOT NULL, strength REAL NOT NULL, scorer TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (run_id, task, item, strength, scorer));
INSERT INTO results VALUES ('r', 't', 'a', 4.0, 'logprob', '{"B": 0.5}');
""")
    con.commit()
    con.close()
    with ResultStore(db) as s:
        assert s.records("r") == [{"task": "t", "item": "a", "strength": 4.0, "scorer": "logprob", "B": 0.5,
                                   "method": "steering", "setting": ""}]
        s.write_cell("r2", "t", "0", [{"item": "a", "strength": 0.0, "scorer": "logprob", "B": 0.1}], "now",
                     method="dpo", setting="beta=0.1")
        s.write_cell("r3", "t", "0", [{"item": "a", "strength": 8.0, "scorer": "logprob", "B": 0.9}], "now")
        assert s.records("r2")[0]["method"] == "dpo" and s.records("r2")[0]["setting"] == "beta=0.1"
        assert s.records("r3")[0]["method"] == "steering" and s.records("r3")[0]["setting"] == "8"


# ---------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_align")
    tiny_model("llama", n_layers=2, seed=1).save_pretrained(d)
    make_tokenizer().save_pretrained(d)
    return d


def _config(tiny_dir, path, **over):
    cfg = {
        "model": str(tiny_dir), "seed": 0, "chunk": 4, "batch_size": 8,
        "data": {"pairs": "refusal", "n_pairs": 8, "n_preserve": 4, "preserve_tokens": 4}, "alphas": [0.25, 0.5, 0.75],
        "lora": {"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
        "train": {"steps": 4, "lr": 0.01, "batch_size": 4, "max_length": 96, "warmup_steps": 0},
        "settings": [{"method": "dpo", "beta": 0.1}, {"method": "dpo_reg", "beta": 0.1, "lambda": 10.0},
                     {"method": "sft"}, {"method": "selective", "beta": 0.1, "lr_factor": 0.5}],
        "tasks": [{"name": "refusal", "limit": 8, "options": {"scorers": ["logprob"]}}, {"name": "arc_easy", "limit": 8}],
    }
    cfg.update(over)
    path.write_text(yaml.safe_dump(cfg))
    return path


def _rows(out):
    con = sqlite3.connect(out / "results.sqlite")
    rows = sorted(con.execute("SELECT run_id, task, item, strength, scorer, data, method, setting FROM results"))
    con.close()
    return rows


ENV = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}  # every run in the same setting: equal bits


@pytest.fixture(scope="module")
def align_run(tiny_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("align")
    cfg = _config(tiny_dir, d / "align.yaml")
    ref = d / "ref"
    r = subprocess.run([sys.executable, "-m", "steertax.cli", "--quiet", "align", str(cfg), "--out", str(ref)],
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not [ln for ln in r.stderr.splitlines() if ln.strip()], r.stderr[-2000:]  # --quiet is quiet
    return cfg, ref


def test_align_command_and_resume_after_sigkill(align_run, tmp_path):
    cfg, ref = align_run
    env = ENV
    s = json.loads((ref / "summary.json").read_text())
    plain = [r for r in s["settings"] if "knob" not in r]
    assert [r["method"] for r in plain] == ["base", "dpo", "dpo_reg", "sft", "selective"]
    assert {"refusal", "arc_easy"} <= set(s["settings"][1]["tasks"])
    # every adapter's α curve (the default alphas 0.25, 0.5, 0.75), one summary row per α
    curves = [r for r in s["settings"] if "knob" in r]
    assert [(r["knob"]["of"], r["knob"]["value"]) for r in curves] == [
        (p["setting"], a) for p in plain[1:] for a in (0.25, 0.5, 0.75)
    ]
    assert all(r["knob"]["name"] == "α" and not r["knob"]["extrapolated"] for r in curves)
    assert (ref / "table.md").read_text().count("| dpo | dpo beta=0.1 |") == 2 and (ref / "figures" / "align.png").stat().st_size > 5000
    assert len(list((ref / "adapters").glob("*/adapter_model.safetensors"))) == 4
    want = _rows(ref)
    assert len(want) == 5 * (8 + 8) + 4 * 3 * (8 + 8) and {r[6] for r in want} == {"base", "dpo", "dpo_reg", "sft", "selective"}
    # kill a second run mid-sweep (it SIGKILLs itself once its 2nd adapter is in place: steertax._faults), then
    # rerun: finished settings are kept, the rows equal the uninterrupted run's
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "steertax.cli", "--quiet", "align", str(cfg), "--out", str(out)]
    p = subprocess.run(cmd, env={**env, "STEERTAX_TEST_KILL_AT": "adapter:2"}, capture_output=True, text=True, timeout=600)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-2000:])
    kept = {q.parent.name: q.stat().st_mtime_ns for q in (out / "adapters").glob("*/setting.json")}
    assert len(kept) == 2 and 0 < len(_rows(out)) < len(want)  # base and the first setting evaluated, not the second
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for name, mtime in kept.items():
        assert (out / "adapters" / name / "setting.json").stat().st_mtime_ns == mtime  # not retrained
    assert _rows(out) == want
    for q in (ref / "adapters").glob("*/adapter_model.safetensors"):
        a, b = _adapter_tensors(q.parent), _adapter_tensors(out / "adapters" / q.parent.name)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_inputs_are_one_line(tiny_dir, tmp_path, capsys):
    bad = tmp_path / "prefs.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    cfg = _config(tiny_dir, tmp_path / "a.yaml", data={"pairs": str(bad), "n_pairs": 4})
    assert main(["--quiet", "align", str(cfg), "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "column 'rejected' is missing" in err[0]
    assert not (tmp_path / "o1" / "results.sqlite").exists()  # nothing half-written
    bad.write_text(json.dumps({"prompt": "p", "chosen": " ", "rejected": "r"}) + "\n")
    with pytest.raises(DataError, match="'chosen' is empty"):
        preference_data(str(bad))
    with pytest.raises(ConfigError, match="not one of"):
        align_from_dict({"settings": [{"method": "ppo"}], "tasks": [{"name": "arc_easy"}]})
    with pytest.raises(ConfigError, match="lambda"):
        align_from_dict({"settings": [{"method": "dpo_reg", "lambda": -1}], "tasks": [{"name": "arc_easy"}]})


def test_adapter_for_another_base_is_refused(rows, tmp_path):
    tok = make_tokenizer()
    train_setting(tiny_model("llama", n_layers=2, seed=1), tok, AlignSetting.of("dpo"), rows, tmp_path / "a", lora=LORA,
                  train=TrainSettings(steps=1, batch_size=2, max_length=96, warmup_steps=0), progress=False)
    with pytest.raises(ModelError, match="another base model"):
        check_adapter(tmp_path / "a", tiny_model("gpt2", n_layers=2))
    from transformers import AutoModelForCausalLM

    from conftest import tiny_config

    wide = tiny_config("llama", 2)
    wide.hidden_size, wide.intermediate_size = 64, 128
    with pytest.raises(ModelError, match="another base model"):
        check_adapter(tmp_path / "a", AutoModelForCausalLM.from_config(wide))


def test_compare_puts_steering_and_fine_tuning_on_one_frontier(align_run, tiny_dir, tmp_path, capsys):
    from steertax.config import from_dict
    from steertax.runners.compare import compare
    from steertax.runners.study import run_study

    study = from_dict({
        "model": str(tiny_dir), "chunk": 4, "batch_size": 8,
        "vector": {"pairs": "refusal", "n_pairs": 16, "layers": "0-1"},
        "strengths": {"values": [-2.0, 0.0, 1.0, 2.0, 4.0]},
        "tasks": [{"name": "refusal", "limit": 8, "options": {"scorers": ["logprob"]}}, {"name": "arc_easy", "limit": 8}],
        "study": {"n_boot": 10}, "theory": {"enabled": False},
    })
    run_study(study, tmp_path / "steer", progress=False)
    assert main(["--quiet", "compare", *ONE_AXIS_CLI, str(tmp_path / "steer"), str(align_run[1]), "--out", str(tmp_path / "cmp"),
                 "--n-boot", "200"]) == 0
    res = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    kinds = [m["kind"] for m in res["methods"]]
    assert [k for k in kinds if not k.endswith("(α)")] == ["steering", "dpo", "dpo_reg beta=0.1", "sft", "selective beta=0.1 lr x0.5"]
    curves = [m for m in res["methods"] if m["kind"].endswith("(α)")]  # every adapter's α curve: base → α → the adapter
    assert len(curves) == 4 and all([p["value"] for p in m["points"]] == [None, 0.25, 0.5, 0.75, 1.0] for m in curves)
    one = next(m for m in curves if m["kind"] == "sft lr x1 (α)")
    sft = next(m for m in res["methods"] if m["kind"] == "sft")
    assert one["points"][-1]["tasks"]["refusal"]["delta"] == sft["points"][-1]["tasks"]["refusal"]["delta"]  # α = 1 is the adapter
    # the laws along every α curve, and every method's efficient point chosen on half the items, measured on the rest
    assert all(m["laws"]["fitted"] and m["laws"]["refusal"]["verdict"] for m in curves)
    assert not next(m for m in res["methods"] if m["kind"] == "dpo")["laws"]["fitted"]  # β: the base is at ∞
    for m in res["methods"]:
        e = m["efficient"]
        assert e["setting"] in ["base", *[p["setting"] for p in m["points"][1:]]] and e["n_held_out"]["refusal"] > 0
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "## The paper's laws along each knob" in md and "## Efficient points by weight" in md
    assert res["items"]["refusal"]["n_common"] == 8 and res["items"]["arc_easy"]["n_common"] == 8
    steer = res["methods"][0]
    assert [p["value"] for p in steer["points"]] == [None, 1.0, 2.0, 4.0]  # the base, then r > 0 in knob order
    assert steer["points"][0]["tasks"]["refusal"]["delta"] == 0.0
    dpo = next(m for m in res["methods"] if m["kind"] == "dpo")
    betas = [p["value"] for p in dpo["points"][1:]]
    assert betas == sorted(betas, reverse=True)  # β from the base (∞) down
    d = res["decisions"]
    assert d["adjust"] == "maxt" and d["comparisons"] and res["intervals"].startswith("95%")
    for c in d["comparisons"]:
        assert c["verdict"] and (c["status"] != "ok" or c["p_adjusted"] >= c["p"] - 1e-12)
        if c["status"] == "ok" and not c["decided"]:
            assert c["verdict"] == "can't tell with 8 refusal items and 8 arc_easy items" and c["to_decide"]["critical_value"] > 0
    # the folders' own rows (no --evaluate) and a fresh evaluation on the same items against one base agree
    ev = compare([tmp_path / "steer", align_run[1]], tmp_path / "cmp-ev", **ONE_AXIS, evaluate=True, n_boot=200, progress=False,
                 chunk=4, step=4)
    assert ev["items"]["refusal"]["n_common"] == 8 and ev["evaluated"]
    for r0, r1 in zip(res["table"], ev["table"], strict=True):
        assert (r0["method"], r0["setting"]) == (r1["method"], r1["setting"])
        assert r1["dB"] == pytest.approx(r0["dB"], abs=1e-4) and r1["dH"] == pytest.approx(r0["dH"], abs=1e-4)
    assert "| dpo |" in (tmp_path / "cmp" / "compare.md").read_text()
    # --until-decided: item chunks are added while comparisons are open; finished cells are never changed
    con = sqlite3.connect(tmp_path / "cmp-ev" / "results.sqlite")
    before = set(con.execute("SELECT run_id, task, item, strength, scorer, data FROM results").fetchall())
    con.close()
    kw = dict(evaluate=True, until_decided=True, step=4, chunk=4, n_boot=200, progress=False, cap=16)
    ad = compare([tmp_path / "steer", align_run[1]], tmp_path / "cmp-ev", **ONE_AXIS, budget=4, **kw)
    looks = ad["looks"]
    assert looks[0]["items"] == {"refusal": 8, "arc_easy": 8} and looks[0]["fraction"] == 0.5 and len(looks) <= 2
    assert ad["design"]["cap"] == {"refusal": 16, "arc_easy": 16}
    for prev, nxt in zip(looks, looks[1:], strict=False):  # a look with open questions adds one step (4) per task
        assert prev["open"] > 0 and nxt["items"] == {k: v + 4 for k, v in prev["items"].items()}
        assert nxt["alpha_spent"] > prev["alpha_spent"]
    # a rerun with a larger budget continues the same design (the looks go on, α is not spent again) up to its cap
    first = json.loads((tmp_path / "cmp-ev" / "sequential.json").read_text())
    more = compare([tmp_path / "steer", align_run[1]], tmp_path / "cmp-ev", **ONE_AXIS, budget=8, **kw)
    assert more["looks"][: len(first["looks"])] == first["looks"] and more["looks"][-1]["alpha_spent"] <= 0.05 + 1e-12
    if first["looks"][-1]["open"]:
        assert len(more["looks"]) > len(first["looks"]) and more["looks"][-1]["items"]["refusal"] <= 16
    kept = {c["id"] for c in more["decisions"]["comparisons"] if c.get("look")}
    assert kept >= {i for lk in first["looks"] for i in lk["decided"]}  # decisions made earlier are kept
    # the record belongs to this comparison: another one into the same folder is refused in one line
    with pytest.raises(ConfigError, match="records the adaptive design of another comparison"):
        compare([tmp_path / "steer", align_run[1]], tmp_path / "cmp-ev", **ONE_AXIS, budget=8, levels=[0.1], **kw)
    assert ad["design"]["spending"] == "lan-demets-obf"  # the default; a rerun may not change it
    with pytest.raises(ConfigError, match="differs from the design's lan-demets-obf"):
        compare([tmp_path / "steer", align_run[1]], tmp_path / "cmp-ev", **ONE_AXIS, budget=8, spending="power-6", **kw)
    looks = more["looks"]
    con = sqlite3.connect(tmp_path / "cmp-ev" / "results.sqlite")
    after = set(con.execute("SELECT run_id, task, item, strength, scorer, data FROM results").fetchall())
    con.close()
    assert not sorted(before - after)[:3], sorted(before - after)[:3]
    assert more["items"]["refusal"]["n_common"] == looks[-1]["items"]["refusal"]
    assert "## Looks" in (tmp_path / "cmp-ev" / "compare.md").read_text()
    assert all(m["optimum"]["setting"] in [p["setting"] for p in m["points"]] for m in res["methods"])
    assert (tmp_path / "cmp" / "figures" / "frontier.png").stat().st_size > 5000
    capsys.readouterr()
    # a level no method reaches: one line, exit 2
    assert main(["--quiet", "compare", *ONE_AXIS_CLI, str(tmp_path / "steer"), "--out", str(tmp_path / "c3"), "--levels", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no method reaches ΔB = 5" in err[0]


def test_tax_base_vs_adapter_and_bad_pairs(align_run, tiny_dir, tmp_path, capsys):
    adapter = next((align_run[1] / "adapters").glob("dpo_beta=0.1-*"))
    out = tmp_path / "tax.json"
    assert main(["--quiet", "tax", "--base", str(tiny_dir), "--aligned", str(adapter), "--benchmarks", "arc_easy,truthfulqa",
                 "--limit", "6", "--json", str(out), "--markdown", str(tmp_path / "tax.md")]) == 0
    res = json.loads(out.read_text())
    assert set(res["benchmarks"]) == {"arc_easy", "truthfulqa"}
    for r in res["benchmarks"].values():
        assert r["n"] == 6 and r["tax_percent"] == pytest.approx((r["base"] - r["value"]) / r["base"] * 100)
        assert r["tax_ci95"][0] <= r["tax_percent"] <= r["tax_ci95"][1]
    assert res["mean_tax_percent"] == pytest.approx(sum(r["tax_percent"] for r in res["benchmarks"].values()) / 2)
    assert res["helpful_rate"]["n"] > 0 and res["harmless_rate"]["n"] > 0
    assert "| arc_easy |" in (tmp_path / "tax.md").read_text()
    capsys.readouterr()
    # the base against itself: zero tax, exactly
    assert main(["--quiet", "tax", "--base", str(tiny_dir), "--aligned", str(tiny_dir), "--benchmarks", "arc_easy",
                 "--limit", "4", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["benchmarks"]["arc_easy"]["tax_percent"] == 0.0
    # models that read different tokens are refused in one line
    other = tmp_path / "other"
    tiny_model("llama", n_layers=2).save_pretrained(other)
    t2 = make_tokenizer()
    t2.add_tokens(["<extra>"])
    t2.save_pretrained(other)
    capsys.readouterr()
    assert main(["--quiet", "tax", "--base", str(tiny_dir), "--aligned", str(other), "--benchmarks", "arc_easy", "--limit", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different tokenizers" in err[0]


@pytest.mark.slow
def test_smollm2_dpo_adapter_refuses_and_its_tax_is_measured(smol, tmp_path):
    """A short DPO run on the real SmolLM2 makes held-out harmful prompts refused (B from about -0.8 to
    well above 0), and `steertax tax` measures the adapter against the base."""
    model, tok = smol
    task = st.tasks.get("refusal", scorers=["logprob"])
    items = task.items(24, seed=0)
    base_B = st.evaluate(model, tok, task, items=items, progress=False)
    info = train_setting(model, tok, AlignSetting.of("dpo", beta=0.1), preference_data("refusal", 64), tmp_path / "ad",
                         train=TrainSettings(steps=8, batch_size=8, max_length=96, warmup_steps=1), progress=False)
    assert info["history"][-1]["loss"] < info["history"][0]["loss"]
    with AdapterIntervention(tmp_path / "ad", "dpo", "beta=0.1").apply(model) as applied:
        m = applied.model
        tuned_B = st.evaluate(m, tok, task, items=items, progress=False)
    b0 = next(s["mean"] for s in base_B.summary if s["metric"] == "B")
    b1 = next(s["mean"] for s in tuned_B.summary if s["metric"] == "B")
    assert b0 < -0.5 and b1 > 0.5, (b0, b1)
    out = tmp_path / "tax.json"
    assert main(["--quiet", "tax", "--base", "smollm2", "--aligned", str(tmp_path / "ad"), "--benchmarks", "arc_easy,truthfulqa",
                 "--limit", "16", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert all(r["n"] == 16 and r["tax_ci95"] is not None for r in res["benchmarks"].values())
    assert res["harmless_rate"]["value"] >= res["harmless_rate"]["base"]


def test_builtin_config_and_its_quick_version():
    from steertax.runners.align import load_align_config

    cfg = load_align_config(None)
    assert {s.method for s in cfg.settings} == {"dpo", "dpo_reg", "sft", "selective", "orpo", "kto", "curriculum", "data_quality"}
    # every family a curve: β over ≥ 3 log-spaced values (DPO, ORPO, KTO), regularized DPO's λ over ≥ 4, the flipped
    # fraction over 3 (with DPO at f = 0), both curriculum orders, α curves of SFT and selective
    for method in ("dpo", "orpo", "kto"):
        betas = sorted(s.params.beta for s in cfg.settings if s.method == method)
        ratios = [b / a for a, b in zip(betas, betas[1:], strict=False)]
        assert len(betas) >= 3 and max(ratios) / min(ratios) < 1.2  # log-spaced (half decades, rounded)
    assert len({s.params.lam for s in cfg.settings if s.method == "dpo_reg"}) >= 2  # with λ = 0 (DPO itself): a 3-point curve
    assert sorted(s.params.flip for s in cfg.settings if s.method == "data_quality") == [0.1, 0.25, 0.5]
    assert {s.params.order for s in cfg.settings if s.method == "curriculum"} == {"easy_first", "shuffled"}
    assert [len(cfg.alphas_of(s)) for s in cfg.settings if s.method == "dpo" and s.params.beta == 0.1] == [3]  # DPO's α curve
    q = cfg.quick_version()
    assert q.quick and len(q.settings) == 2 and q.train.steps <= 4 and all(t.limit <= 8 for t in q.tasks)
    assert q.training_hash(q.settings[0]) != cfg.training_hash(cfg.settings[0])


def test_a_settings_own_alphas_override_the_configs_and_change_no_training():
    from steertax.runners.align import align_from_dict

    d = {"settings": [{"method": "dpo", "beta": 0.1}, {"method": "sft", "alphas": [0.5]}], "alphas": [0.25, 0.75],
         "tasks": [{"name": "arc_easy"}]}
    cfg = align_from_dict(d)
    assert [cfg.alphas_of(s) for s in cfg.settings] == [[0.25, 0.75], [0.5]]
    plain = align_from_dict({**d, "settings": [{"method": "dpo", "beta": 0.1}, {"method": "sft"}]})
    assert [cfg.training_hash(s) for s in cfg.settings] == [plain.training_hash(s) for s in plain.settings]
    with pytest.raises(ConfigError, match=r"settings\[1\].alphas: .* lists 0 or 1"):
        align_from_dict({**d, "settings": [{"method": "dpo"}, {"method": "sft", "alphas": [0.0, 0.5]}]})


def test_every_method_on_the_frontier_is_drawn_alike_by_no_other():
    """13 methods (the frontier of all methods) get 13 distinct colour and marker pairs, and 40 get 40
    (tests/test_frontier.py checks the family hues and the drawn figure)."""
    from steertax.reports.frontier import method_styles

    kinds = ["steering", "conditional", "dpo", "dpo_reg", "sft", "selective", "mixture", "specialist",
             "task_arithmetic", "ties", "dare", "tsvm", "rtsvm"]
    st = method_styles(kinds)
    assert len({(s["color"], s["marker"]) for s in st.values()}) == 13
    assert len({s["marker"] for s in st.values()}) == 13  # the first 13 differ in marker alone
    many = method_styles([f"m{k}" for k in range(40)])
    assert len({(s["color"], s["marker"]) for s in many.values()}) == 40


def test_compare_refuses_folders_whose_base_rows_differ(align_run, tmp_path, capsys):
    """Two folders that scored the base differently on the same items are not put on one frontier without
    --evaluate: one line naming the fix."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(align_run[1], other)
    con = sqlite3.connect(other / "results.sqlite")
    base_key = json.loads((other / "manifest.json").read_text())["base"]["key"]
    rowid, data = con.execute("SELECT rowid, data FROM results WHERE run_id=? AND task='refusal' LIMIT 1", (base_key,)).fetchone()
    d = json.loads(data)
    d["B"] = float(d["B"]) + 0.5
    con.execute("UPDATE results SET data=? WHERE rowid=?", (json.dumps(d), rowid))
    con.commit()
    con.close()
    assert main(["--quiet", "compare", *ONE_AXIS_CLI, str(align_run[1]), str(other), "--out", str(tmp_path / "cmp"),
                 "--n-boot", "100"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "base rows" in err[0] and "differ on 1 of the 8 common 'refusal' items" in err[0] and "--evaluate" in err[0]


def test_compare_leaves_out_excluded_methods(align_run, tmp_path):
    from steertax.errors import ConfigError
    from steertax.runners.compare import compare

    res = compare([align_run[1]], tmp_path / "cmp", **ONE_AXIS, exclude=["sft", "selective beta=0.1 lr x0.5"], n_boot=100, progress=False)
    assert [m["kind"] for m in res["methods"]] == ["dpo", "dpo beta=0.1 (α)", "dpo_reg beta=0.1", "dpo_reg beta=0.1 lam=10 (α)"]
    with pytest.raises(ConfigError, match="--exclude 'nope' names no method here"):
        compare([align_run[1]], tmp_path / "cmp2", **ONE_AXIS, exclude=["nope"], n_boot=100, progress=False)


def test_selective_drops_preservation_answers_cut_at_the_budget():
    """A preservation answer cut at ``preserve_tokens`` would be a chosen answer ending in EOS mid-sentence:
    such answers are dropped and counted, never used."""
    from steertax.generation import generate_detailed
    from steertax.training.data import preservation_data

    tok, model = make_tokenizer(), tiny_model("llama", n_layers=2, seed=1)
    runs = {}
    for budget in (2, 40):
        got = runs[budget] = preservation_data(model, tok, 8, budget, seed=0)
        assert got["asked"] == 8 and got["dropped_truncated"] + len(got["pairs"]) == 8
        again = generate_detailed(model, tok, [p["prompt"] for p in got["pairs"]], max_new_tokens=budget) if got["pairs"] else []
        assert not any(g.truncated for g in again)  # every kept answer ended before the budget
    full = generate_detailed(model, tok, [p for p in _prompts(8)], max_new_tokens=2)
    # the same prompts: exactly the answers that run past 2 tokens are the ones dropped, and some do
    assert runs[2]["dropped_truncated"] == sum(g.truncated for g in full) > 0


def _prompts(n):
    import random as _r

    from steertax.interventions.steering.pairs import harmless_instructions

    return _r.Random(1).sample(harmless_instructions("train"), n)


def test_the_align_figure_draws_the_knob_curves_from_the_manifest():
    """Each declared curve other than α, in knob order from the base: DPO's points in β order from the base (β → ∞)
    down, and regularized DPO's in λ order ending at DPO at its β (λ = 0, a point of both curves); a curve that does
    not start at the base (the flipped fraction f) does not start at (0, 0). No label is read."""
    from steertax.manifest import ALPHA_KNOB, POINT_KNOB, Family
    from steertax.reports.align import _training_curves
    from steertax.training.data_quality import FLIP_KNOB
    from steertax.training.dpo import BETA_KNOB
    from steertax.training.dpo_reg import LAMBDA_KNOB

    def row(label, b, h, **on):
        return {"method": "m", "setting": label, "on": on, "tasks": {"B": {"delta": b}, "H": {"delta": h}}}

    fams = [Family("dpo", "dpo", "fine-tuning", BETA_KNOB), Family("reg", "dpo_reg", "fine-tuning", LAMBDA_KNOB),
            Family("f", "data_quality", "fine-tuning", FLIP_KNOB), Family("dpo (α)", "dpo", "fine-tuning", ALPHA_KNOB),
            Family("sft", "sft", "fine-tuning", POINT_KNOB)]
    summary = {"families": [f.to_dict() for f in fams], "settings": [
        row("base", 0.0, 0.0), row("a", 1.7, -0.1, dpo=0.1, reg=0.0, f=0.0), row("b", 1.5, -0.05, dpo=1.0),
        row("c", 0.9, -0.01, reg=1.0), row("d", 1.6, -0.08, reg=0.1), row("e", 1.2, -0.2, f=0.25),
        row("g", 0.3, 0.0, **{"dpo (α)": 0.5}), row("s", 0.4, 0.0, sft=None),
    ]}
    assert _training_curves(summary, "B", "H") == [
        [(0.0, 0.0), (1.5, -0.05), (1.7, -0.1)],
        [(0.0, 0.0), (0.9, -0.01), (1.6, -0.08), (1.7, -0.1)],
        [(1.7, -0.1), (1.2, -0.2)],
    ]
