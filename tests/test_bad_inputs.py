"""The bad-input corpus (tests/bad_inputs/): every loader and command refuses malformed input with one
line naming the problem and the fix, exit code 2, no traceback (only with --debug), and leaves
earlier results exactly as they were."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import make_tokenizer, tiny_model
from steertax import SteertaxError
from steertax.cli import main
from steertax.errors import ConfigError, DataError, LayerError, ModelError, VectorError

CORPUS = Path(__file__).parent / "bad_inputs"


def digest(p: Path) -> str:
    if p.is_dir():
        return hashlib.sha256(b"".join(digest(c).encode() for c in sorted(p.rglob("*")) if c.is_file())).hexdigest()
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny model dir, a valid vector for it, one from another model, damaged vector files, big files."""
    d = tmp_path_factory.mktemp("bad")
    tiny = d / "tiny"
    tiny_model("llama", n_layers=6).save_pretrained(tiny)
    make_tokenizer().save_pretrained(tiny)
    other = d / "other"
    from transformers import AutoModelForCausalLM

    from conftest import tiny_config

    cfg = tiny_config("llama", 4)
    cfg.hidden_size = 64
    AutoModelForCausalLM.from_config(cfg).save_pretrained(other)
    make_tokenizer().save_pretrained(other)
    pairs = d / "pairs.csv"
    pairs.write_text("prompt,aligned,misaligned\n" + "".join(f'"q {i}?","No, I won\'t.","Yes, sure {i}."\n' for i in range(10)))
    vec = d / "vec.safetensors"
    assert main(["--quiet", "extract", "--model", str(tiny), "--pairs", str(pairs), "--layers", "1-3", "--out", str(vec)]) == 0
    other_vec = d / "other.safetensors"
    assert main(["--quiet", "extract", "--model", str(other), "--pairs", str(pairs), "--layers", "1-2", "--out", str(other_vec)]) == 0
    data = vec.read_bytes()
    (d / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[4:8] = b"\xff\xff\xff\x7f"  # header length points past the end
    (d / "bad_header.safetensors").write_bytes(bytes(flipped))
    huge = "x" * 10_000_000
    (d / "huge_line.csv").write_text("prompt,aligned,misaligned\n" + f'"q","{huge}","yes"\n')
    (d / "huge_line.jsonl").write_text('{"id": "1", "query": "' + huge + '", "choices": ["a", "b"], "gold": 0}\n')
    (d / "no_newlines.csv").write_text(huge)
    for f in CORPUS.iterdir():  # configs may name the tiny model / pairs
        if f.suffix == ".yaml":
            (d / f.name).write_bytes(f.read_bytes().replace(b"{tiny}", str(tiny).encode()).replace(b"{pairs}", str(pairs).encode())
                                     .replace(b"{c}", str(CORPUS).encode()).replace(b"{d}", str(d).encode()))
    # folders for `steertax compare` (its checks read only the manifest and look for the store) and `tax --aligned`
    import yaml

    from steertax.manifest import Manifest

    def run_folder(name, kind="config", model=str(tiny), tasks=("refusal", "arc_easy"), results=True):
        f = d / name
        f.mkdir()
        cfg = {"model": model, "tasks": [{"name": t} for t in tasks]}
        (f / f"{kind}.resolved.yaml").write_text(yaml.safe_dump({"run_id": name, "config": cfg}))
        if results:  # a finished run: its store and its manifest
            (f / "results.sqlite").write_bytes(b"")
            Manifest("run" if kind == "config" else kind, name, model, None, 0, cfg["tasks"], "k").write(f)

    run_folder("run_a")
    run_folder("run_other_model", model="someone/else")
    run_folder("unfinished_run", results=False)
    run_folder("align_unfinished", kind="align", results=False)
    run_folder("old_run", results=False)
    (d / "old_run" / "results.sqlite").write_bytes(b"")  # finished before manifests existed
    (d / "damaged_run").mkdir()
    (d / "damaged_run" / "config.resolved.yaml").write_text("run_id: [unclosed\n")
    (d / "damaged_run" / "results.sqlite").write_bytes(b"")
    (d / "damaged_run" / "manifest.json").write_text('{"manifest_version": 1, "kind": [unclosed\n')
    (d / "corrupt_run").mkdir()
    (d / "corrupt_run" / "results.sqlite").write_bytes(b"this is not a database " * 200)
    (d / "run_ok.yaml").write_text(yaml.safe_dump({"model": str(tiny), "vector": {"pairs": str(pairs), "n_pairs": 8, "layers": "1-2"},
                                                   "strengths": {"values": [0, 1]}, "tasks": [{"name": "arc_easy", "limit": 2}]}))
    (d / "align_negative_alpha.yaml").write_text(yaml.safe_dump({"model": str(tiny), "alphas": [-1.0], "settings": [{"method": "dpo"}],
                                                                 "tasks": [{"name": "arc_easy", "limit": 2}]}))
    (d / "x.gguf").write_bytes(b"GGUF" + bytes(60))
    (d / "broken_adapter").mkdir()
    (d / "broken_adapter" / "adapter_config.json").write_text('{"peft_type": "LORA", "target_modules": ["q_proj"]}\n')
    # earlier results that must survive every failure
    results = d / "results"
    results.mkdir()
    (results / "vector.safetensors").write_bytes(data)
    (results / "eval.json").write_text('{"earlier": true}\n')
    run = results / "run"
    run.mkdir()
    (run / "summary.json").write_text('{"earlier": "summary"}\n')
    (run / "results.sqlite").write_bytes(b"SQLite format 3\x00 earlier rows")
    return {"tiny": str(tiny), "pairs": str(pairs), "vec": str(vec), "other_vec": str(other_vec), "d": str(d),
            "c": str(CORPUS), "res": str(results)}


E, G, V, R = "extract", "generate", "eval", "run"
CASES = [
    # pairs files (extract)
    ([E, "--model", "{tiny}", "--pairs", "{c}/pairs_missing_column.csv", "--out", "{res}/vector.safetensors"], "lacks column"),
    ([E, "--model", "{tiny}", "--pairs", "{c}/pairs_empty.csv", "--out", "{res}/vector.safetensors"], "empty"),
    ([E, "--model", "{tiny}", "--pairs", "{c}/pairs_header_only.csv", "--out", "{res}/vector.safetensors"], "no rows"),
    ([E, "--model", "{tiny}", "--pairs", "{c}/pairs_latin1.csv", "--out", "{res}/vector.safetensors"], "not UTF-8"),
    ([E, "--model", "{tiny}", "--pairs", "{c}/pairs_broken.jsonl", "--out", "{res}/vector.safetensors"], "not valid JSON"),
    ([E, "--model", "{tiny}", "--pairs", "{c}/pairs_empty_field.jsonl", "--out", "{res}/vector.safetensors"], "non-empty strings"),
    ([E, "--model", "{tiny}", "--pairs", "{d}/huge_line.csv", "--out", "{res}/vector.safetensors"], "characters (limit"),
    ([E, "--model", "{tiny}", "--pairs", "{d}/no_newlines.csv", "--out", "{res}/vector.safetensors"], "lack newlines"),
    ([E, "--model", "{tiny}", "--pairs", "{d}/missing.csv", "--out", "{res}/vector.safetensors"], "does not exist"),
    ([E, "--model", "{tiny}", "--pairs", "nonsense", "--out", "{res}/vector.safetensors"], "unknown pairs"),
    ([E, "--model", "{tiny}", "--pairs", "{pairs}", "--layers", "1-40", "--out", "{res}/vector.safetensors"], "out of range"),
    ([E, "--model", "{tiny}", "--pairs", "{pairs}", "--layers", "8-x", "--out", "{res}/vector.safetensors"], "layer"),
    ([E, "--model", "no-such-model", "--out", "{res}/vector.safetensors"], "unknown model"),
    ([E, "--model", "{tiny}", "--pairs", "{pairs}", "--out", "{res}"], "is a folder"),
    # task data files, strengths, vectors (eval)
    ([V, "--model", "{tiny}", "--task", "no_such_task"], "unknown task"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--option", "source={c}/arc_duplicate_ids.jsonl",
      "--json", "{res}/eval.json"], "appears twice"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--option", "source={c}/arc_gold_out_of_range.jsonl",
      "--json", "{res}/eval.json"], "out of range"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--option", "source={c}/arc_missing_gold.jsonl"], "lacks column"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--option", "source={c}/arc_gold_not_int.jsonl"], "0-based choice index"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--option", "source={c}/arc_one_choice.jsonl"], "at least 2 answers"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--option", "source={d}/huge_line.jsonl"], "characters (limit"),
    ([V, "--model", "{tiny}", "--task", "mmlu", "--option", "source={c}/mmlu_answer_out_of_range.csv"], "letter A-D"),
    ([V, "--model", "{tiny}", "--task", "mmlu", "--option", "source={c}/mmlu_missing_columns.csv"], "lacks column"),
    ([V, "--model", "{tiny}", "--task", "refusal", "--option", "source={c}/refusal_utf16.csv"], "not UTF-8"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--option", "nokeyvalue"], "KEY=VALUE"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--option", "bogus=1"], "bad option"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--vector", "{vec}", "--strength", "nan"], "not finite"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--vector", "{vec}", "--strength", "inf"], "not finite"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--vector", "{vec}", "--strength", "strong"], "not a number"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--strength", "4"], "needs --vector"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--vector", "{vec}", "--layers", "5", "--strength", "1"], "no layer"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--vector", "{other_vec}", "--strength", "1", "--limit", "2"], "hidden size"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--vector", "{d}/truncated.safetensors", "--strength", "1"],
     "not a readable safetensors"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--vector", "{d}/bad_header.safetensors", "--strength", "1"],
     "not a readable safetensors"),
    ([V, "--model", "{tiny}", "--task", "arc_easy", "--vector", "{c}/vector_random_bytes.safetensors", "--strength", "1"],
     "not a readable safetensors"),
    ([G, "--model", "{tiny}", "--vector", "{other_vec}", "--strength", "1", "--prompt", "hi"], "hidden size"),
    ([G, "--model", "{tiny}", "--vector", "{vec}", "--strength=-inf", "--prompt", "hi"], "not finite"),
    # configs (run): validated before anything is written
    ([R, "{d}/config_unknown_key.yaml", "--out", "{res}/run"], "unknown key strenghts"),
    ([R, "{d}/config_wrong_type.yaml", "--out", "{res}/run"], "seed: expected an integer"),
    ([R, "{d}/config_nan_strength.yaml", "--out", "{res}/run"], "not a finite number"),
    ([R, "{d}/config_inf_strength.yaml", "--out", "{res}/run"], "not a finite number"),
    ([R, "{d}/config_text_strength.yaml", "--out", "{res}/run"], "strengths.values[1]"),
    ([R, "{d}/config_inf_text.yaml", "--out", "{res}/run"], "expected a number, got 'inf'"),
    ([R, "{d}/config_layer_out_of_range.yaml", "--out", "{res}/run"], "out of range"),
    ([R, "{d}/config_unknown_task.yaml", "--out", "{res}/run"], "unknown task"),
    ([R, "{d}/config_unknown_model.yaml", "--out", "{res}/run"], "unknown model"),
    ([R, "{d}/config_bad_yaml.yaml", "--out", "{res}/run"], "not valid YAML"),
    ([R, "{d}/config_negative_limit.yaml", "--out", "{res}/run"], "must be positive"),
    ([R, "{d}/config_empty.yaml", "--out", "{res}/run"], "empty"),
    ([R, "{d}/no_such_config.yaml", "--out", "{res}/run"], "does not exist"),
    ([R, "--out", "{res}/run", "--quick", "--bogus-flag"], "unrecognized arguments"),
    (["fit", "{d}/no_such_run"], "no config.resolved.yaml"),
    (["tax", "{res}"], "no config.resolved.yaml"),
    # vectors: info, export, import
    (["info", "{d}/missing.safetensors"], "does not exist"),
    (["info", "{c}/vector_random_bytes.safetensors"], "not a readable safetensors"),
    (["export", "{vec}", "--format", "lm-eval", "--out", "{res}/vector.safetensors"], "needs --strength"),
    (["export", "{vec}", "--format", "lm-eval", "--strength", "nan", "--out", "{res}/eval.json"], "not finite"),
    (["export", "{vec}", "--format", "gguf", "--strength", "2", "--out", "{res}/eval.json"], "takes its scale at run time"),
    (["export", "{vec}", "--format", "gguf", "--layers", "0-30", "--out", "{res}/eval.json"], "out of range"),
    (["export", "{vec}", "--format", "onnx", "--out", "{res}/eval.json"], "invalid choice"),
    (["import", "{c}/control_vector_garbage.gguf", "--out", "{res}/vector.safetensors"], "not a readable GGUF"),
    (["import", "{vec}", "--out", "{res}/vector.safetensors"], "not a readable GGUF"),
    (["import", "{d}/missing.gguf", "--out", "{res}/vector.safetensors"], "does not exist"),
]


@pytest.mark.parametrize("args,needle", CASES, ids=[f"{a[0]}-{n}-{i}" for i, (a, n) in enumerate(CASES)])
def test_bad_input_one_line_exit_2_nothing_lost(args, needle, env, capsys):
    argv = [a.format(**env) for a in args]
    before = digest(Path(env["res"]))
    try:
        rc = main(["--quiet"] + argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert rc == 2, (argv, err[-2000:])
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("steertax"), err
    assert needle in lines[0], (needle, lines[0])
    assert digest(Path(env["res"])) == before, "earlier results were changed"


def test_real_process_one_line_and_debug_traceback(env):
    run = lambda *a: subprocess.run([sys.executable, "-m", "steertax.cli", *a], capture_output=True, text=True,  # noqa: E731
                                    env={**os.environ, "TQDM_DISABLE": "1"})
    r = run("info", f"{env['c']}/vector_random_bytes.safetensors")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("steertax: error:")
    assert "Traceback" not in r.stderr
    r = run("--debug", "info", f"{env['c']}/vector_random_bytes.safetensors")
    assert r.returncode != 0 and "Traceback" in r.stderr and "VectorError" in r.stderr
    r = run("run", f"{env['c']}/config_bad_yaml.yaml")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_debug_reraises_in_process(env):
    with pytest.raises(SteertaxError):
        main(["--debug", "info", f"{env['d']}/missing.safetensors"])


def test_nothing_unpickles_and_remote_code_is_opt_in():
    """Static check of the package source: no pickle, no torch.load, trust_remote_code only when asked."""
    import re

    src = Path(__file__).parent.parent / "src" / "steertax"
    for f in src.rglob("*.py"):
        text = f.read_text()
        code = "\n".join(ln.split("#")[0] for ln in text.splitlines())
        assert not re.search(r"\bimport pickle\b|\bpickle\.loads?\(|\bjoblib\b|read_pickle", code), f
        for m in re.finditer(r"torch\.load\(([^)]*)\)", code):
            assert "weights_only=True" in m.group(1), f
        assert "trust_remote_code=True" not in code, f


# --------------------------------------------------------------------------- fail fast (issue 11, item 6)
# `steertax run` checks every input before it loads the model (steertax.runners.preflight). Each bad config below
# fails with a typed error whose one line names the problem, and the patched model loader is never
# called: the bound on how long the error takes is "no model load, no vector extraction", not a timer.

class ModelLoaded(Exception):
    """Raised by the patched loader: the run got past the preflight."""


@pytest.fixture
def loads(monkeypatch):
    """Patch the model loader to record the call and stop the run: in steertax.models and in every steertax
    module that imported it at its top (the study's, align's and merge's runner, compare, the executors)."""
    import importlib

    import steertax.models

    calls: list[str] = []

    def fake_load_model(name, *a, **k):
        calls.append(str(name))
        raise ModelLoaded(str(name))

    fake_load_model.is_fake = True  # a module first imported while an earlier test's fake was in place holds that fake
    real = steertax.models.load_model
    src = Path(steertax.models.__file__).parent
    for f in sorted(src.rglob("*.py")):
        if "load_model" in f.read_text(encoding="utf-8"):
            mod = importlib.import_module(".".join(("steertax", *f.relative_to(src).with_suffix("").parts)).removesuffix(".__init__"))
            got = getattr(mod, "load_model", None)
            if getattr(got, "is_fake", False):
                mod.load_model = real  # an earlier test's fake (bound by a module imported while it was in place): undo it for good
                got = real
            if got is real:
                monkeypatch.setattr(mod, "load_model", fake_load_model)
    monkeypatch.setattr(steertax.models, "load_model", fake_load_model)
    yield calls
    import sys

    for name, mod in list(sys.modules.items()):  # modules first imported during the test bound the fake: give them the real one
        if name.startswith("steertax") and getattr(getattr(mod, "load_model", None), "is_fake", False):
            mod.load_model = real  # not through monkeypatch: its undo would put the fake back


PREFLIGHT = [
    ("config_task_missing_source.yaml", DataError, ["tasks[1] arc_easy", "nosuch.csv", "does not exist", "check the path"]),
    ("config_task_wrong_columns.yaml", DataError,
     ["tasks[1] arc_easy", "arc_wrong_columns.csv", "lacks column(s) ['query', 'choices', 'gold']", "has ['question', 'answer']"]),
    ("config_task_header_only.yaml", DataError, ["tasks[1] arc_easy", "arc_header_only.csv", "has no rows"]),
    ("config_task_utf16.yaml", DataError, ["tasks[0] refusal", "refusal_utf16.csv", "not UTF-8", "UTF-16LE", "iconv -f UTF-16"]),
    ("config_pairs_broken.yaml", DataError, ["vector.pairs", "pairs_broken.jsonl", "line 2 is not valid JSON"]),
    ("config_vector_path_missing.yaml", VectorError, ["vector.path", "no_such_vector.safetensors", "does not exist"]),
    ("config_alignment_task_absent.yaml", ConfigError,
     ["study.alignment_task", "'bias_agreement' is not among the config's tasks ['refusal', 'arc_easy']"]),
    ("config_layer_out_of_range.yaml", LayerError, ["vector.layers", "out of range", "has 6 layers"]),
    ("config_unknown_model.yaml", ModelError, ["model: unknown model 'no-such-model-anywhere'", "hub id like 'org/name'"]),
]


@pytest.mark.parametrize("name,etype,needles", PREFLIGHT, ids=[c[0][7:-5] for c in PREFLIGHT])
def test_run_study_fails_before_loading_the_model(name, etype, needles, env, loads, tmp_path):
    from steertax.config import load_config
    from steertax.runners.study import run_study

    cfg = load_config(Path(env["d"]) / name)
    out = tmp_path / "run"
    with pytest.raises(etype) as ei:
        run_study(cfg, out, progress=False)
    msg = str(ei.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, (n, msg)
    assert loads == [], "the model was loaded before the bad input was found"
    assert not out.exists(), "nothing may be written before the inputs are checked"


def test_several_problems_are_named_in_one_line(env, loads, tmp_path):
    from steertax.config import load_config
    from steertax.runners.study import run_study

    with pytest.raises(DataError) as ei:
        run_study(load_config(Path(env["d"]) / "config_several_problems.yaml"), tmp_path / "run", progress=False)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("3 problems")
    for n in ("(1) vector.pairs", "lacks column(s) ['misaligned']", "(2) tasks[0] refusal", "refusal_latin1.csv",
              "Latin-1/Windows-1252", "byte 0xe9 at line 2", "(3) study.helpfulness_task", "'mmlu' is not among"):
        assert n in msg, (n, msg)
    assert [type(p) for p in ei.value.problems] == [DataError, DataError, ConfigError]
    assert loads == []


def _valid_cfg(env, tmp_path, **vector):
    from steertax.config import from_dict

    arc = tmp_path / "my_arc.csv"
    arc.write_text('id,query,choices,gold\nq1,"Which is a mammal?",cat|trout,0\nq2,"Which one swims?",cat|trout,1\n',
                   encoding="utf-8")
    return from_dict({"model": env["tiny"], "vector": {"layers": "1-2", **vector}, "strengths": {"values": [0, 1]},
                      "tasks": [{"name": "refusal", "limit": 2, "options": {"scorers": ["logprob"]}},
                                {"name": "arc_easy", "options": {"source": str(arc)}}]})


@pytest.mark.parametrize("vector", ["pairs", "path"])
def test_valid_config_with_user_csv_passes_preflight(vector, env, loads, tmp_path):
    from steertax.runners.preflight import preflight
    from steertax.runners.study import run_study

    cfg = _valid_cfg(env, tmp_path, **({"pairs": env["pairs"], "n_pairs": 8} if vector == "pairs" else {"path": env["vec"]}))
    info = preflight(cfg, tmp_path / "run")
    assert info["tasks"] == {"refusal": 2, "arc_easy": 2} and info["model"]["kind"] == "dir"
    with pytest.raises(ModelLoaded):  # the sentinel: the run got through the preflight to the model
        run_study(cfg, tmp_path / "run", progress=False)
    assert loads == [env["tiny"]]


def test_cli_run_bad_config_one_line_exit_2_model_not_loaded(env, loads, capsys):
    before = digest(Path(env["res"]))
    rc = main(["--quiet", "run", f"{env['d']}/config_task_wrong_columns.yaml", "--out", f"{env['res']}/run"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith("steertax: error: ") and "tasks[1] arc_easy" in err and "lacks column(s)" in err
    assert loads == []
    assert digest(Path(env["res"])) == before, "earlier results were changed"


def test_cli_run_check(env, loads, tmp_path, capsys):
    assert main(["--quiet", "run", f"{env['d']}/config_task_missing_source.yaml", "--check"]) == 2
    assert "nosuch.csv" in capsys.readouterr().err
    ok = tmp_path / "ok.yaml"
    ok.write_text(f"model: {env['tiny']}\nvector: {{pairs: {env['pairs']}, n_pairs: 8, layers: '1-2'}}\n"
                  "strengths: {values: [0, 1]}\ntasks: [{name: refusal, limit: 2}, {name: arc_easy, limit: 3}]\n")
    assert main(["--quiet", "run", str(ok), "--check", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok:") and "refusal 2, arc_easy 3" in out
    assert loads == [] and not (tmp_path / "run").exists()


FAMILY = [  # each task family's own checks, through Task.validate (no model)
    ("refusal", "refusal_utf16_nobom.csv", DataError, "UTF-16LE without a byte-order mark"),
    ("refusal", "refusal_latin1.csv", DataError, "looks like Latin-1/Windows-1252"),
    ("arc_easy", "arc_choice_not_text.jsonl", DataError, "every choice must be a non-empty text"),
    ("arc_easy", "arc_one_choice.jsonl", DataError, "at least 2 answers"),
    ("hellaswag", "arc_gold_out_of_range.jsonl", DataError, "out of range"),
    ("mmlu", "mmlu_missing_columns.csv", DataError, "lacks column(s) ['C', 'D']"),
    ("mmlu", "mmlu_answer_out_of_range.csv", DataError, "letter A-D"),
    ("truthfulqa", "truthfulqa_flat_targets.csv", DataError, "'mc1_targets' must map at least 2 answer texts"),
    ("gsm8k", "gsm8k_answer_no_number.jsonl", DataError, "'answer' has no number"),
    ("drift", "arc_wrong_columns.csv", DataError, "lacks column(s) ['instruction', 'output']"),
    ("over_refusal", "refusal_latin1.csv", DataError, "not UTF-8"),
    ("bbq", "arc_wrong_columns.csv", ConfigError, "bbq reads only its bundled data"),
]


@pytest.mark.parametrize("task,file,etype,needle", FAMILY, ids=[f"{t}-{f}" for t, f, _, _ in FAMILY])
def test_task_family_validation(task, file, etype, needle):
    from steertax import tasks as T

    with pytest.raises(etype) as ei:
        T.get(task, source=str(CORPUS / file)).validate()
    assert needle in str(ei.value) and file in str(ei.value), str(ei.value)


def test_bundled_tasks_and_bom_csv_validate(tmp_path):
    from steertax import tasks as T

    for name in T.names():  # the family checks accept every bundled data set
        assert len(T.get(name).validate(3)) == 3, name
    bom = tmp_path / "excel.csv"  # a spreadsheet's "CSV UTF-8" starts with a byte-order mark
    bom.write_bytes(b"\xef\xbb\xbfprompt,id\nHow do I pick a lock?,x1\n")
    assert [it.id for it in T.get("refusal", source=str(bom)).validate()] == ["x1"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from([".csv", ".jsonl"]), task=st.sampled_from(["arc_easy", "refusal", "mmlu", "gsm8k", "truthfulqa"]),
       data=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8")),
                      st.text(max_size=60).map(lambda t: t.encode("utf-16")),
                      st.text(max_size=60).map(lambda t: t.encode("latin-1", "replace"))))
def test_preflight_on_any_file_is_items_or_one_typed_line(suffix, task, data, tmp_path_factory):
    """Whatever bytes a task's file holds, the preflight's check gives items or a typed one-line error."""
    from steertax import tasks as T
    from steertax.interventions.steering.pairs import check_pairs_file, pairs_from_file

    p = tmp_path_factory.mktemp("prop") / f"f{suffix}"
    p.write_bytes(data)
    try:
        items = T.get(task, source=str(p)).validate(3)
        assert 1 <= len(items) <= 3
    except SteertaxError as e:
        assert str(e).strip() and "\n" not in str(e).strip(), str(e)
    # the pairs check agrees with the loader that extraction uses (which has a tokenizer)
    try:
        check_pairs_file(p)
        ok = True
    except SteertaxError:
        ok = False
    try:
        loaded = len(pairs_from_file(p, make_tokenizer())) >= 2
    except SteertaxError:
        loaded = False
    assert ok == loaded, (data, ok, loaded)


def test_resume_with_cached_vector_does_not_need_the_pairs(env, loads, tmp_path):
    """A run folder that already holds the extracted vector resumes even if the pairs file is gone: the
    preflight asks only for what the run will read (the cache key is study._get_vector's)."""
    import json as _json

    from steertax.config import from_dict
    from steertax.runners.study import run_study

    cfg = _valid_cfg(env, tmp_path, pairs=str(tmp_path / "gone.csv"), n_pairs=8)
    v = cfg.vector
    key = hashlib.sha256(_json.dumps({"model": cfg.model, "seed": cfg.seed, **{k: getattr(v, k) for k in (
        "pairs", "n_pairs", "method", "layers", "position", "heldout")}}, sort_keys=True).encode()).hexdigest()[:12]
    out = tmp_path / "run"
    with pytest.raises(DataError, match="gone.csv does not exist"):
        run_study(cfg, out, progress=False)
    out.mkdir()
    (out / f"vector-{key}.safetensors").write_bytes(Path(env["vec"]).read_bytes())
    with pytest.raises(ModelLoaded):
        run_study(from_dict(cfg.to_dict()), out, progress=False)
    assert loads == [env["tiny"]]


# --------------------------------------------------------------------------- tax, compare, align, merge: before any model loads
# Each case runs `steertax.cli.main` in-process with the model loaders patched (`no_model`: steertax's
# load_model wherever it is bound, and transformers' AutoModelForCausalLM.from_pretrained, record the call and stop the command),
# and asserts exit code 2, one stderr line naming the problem, and that no model was loaded.


@pytest.fixture
def no_model(loads, monkeypatch):
    """`loads`, and transformers' own loader patched too: any model load is recorded (and stops the command)."""
    import transformers

    def fake_from_pretrained(name, *a, **k):
        loads.append(f"transformers:{name}")
        raise ModelLoaded(str(name))

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    return loads


TX = ["tax", "--base", "{tiny}"]
TXA = TX + ["--aligned", "{tiny}"]
CP = "compare"
AL, MG = "align", "merge"
BEFORE_LOAD = [
    # tax: the base, the aligned model or adapter, the vector and strength, the benchmarks, limits, outputs, --from-study
    (TX + ["--aligned", "{d}/no_such_model"], ["--aligned", "no_such_model: does not exist", "check the path"]),
    (["tax", "--aligned", "{d}/no_such_model"], ["2 problems", "no base model: add --base MODEL", "no_such_model: does not exist"]),
    (TX + ["--vector", "{d}/missing.safetensors", "--strength", "nan"],
     ["2 problems", "missing.safetensors does not exist", "--strength: strength nan is not finite"]),
    (TX + ["--vector", "{vec}", "--strength", "nan"], ["--strength", "is not finite", "use a finite number"]),
    (TX + ["--vector", "{vec}", "--strength=-inf"], ["is not finite"]),
    (TX + ["--vector", "{vec}", "--strength", "strong"], ["invalid float value: 'strong'"]),
    (TX + ["--vector", "{vec}"], ["--vector needs --strength R"]),
    (TX + ["--vector", "{other_vec}", "--strength", "1"], ["hidden size 64", "extract a vector from the base model"]),
    (TX + ["--vector", "{d}/truncated.safetensors", "--strength", "1"], ["not a readable safetensors"]),
    (TX + ["--vector", "{c}/vector_random_bytes.safetensors", "--strength", "1"], ["not a readable safetensors"]),
    (TXA + ["--vector", "{vec}", "--strength", "1"], ["--aligned and --vector both give the aligned model"]),
    (TXA + ["--strength", "2"], ["--strength 2.0", "no --vector is given"]),
    (TX, ["give the aligned model as --aligned"]),
    (["tax", "--base", "no-such-model-anywhere", "--aligned", "{tiny}"], ["--base", "unknown model 'no-such-model-anywhere'"]),
    (["tax", "--base", "{pairs}", "--aligned", "{tiny}"], ["is a file but not a .gguf"]),
    (TX + ["--aligned", "{res}"], ["neither adapter_config.json (a peft adapter) nor config.json (a model)"]),
    (TX + ["--aligned", "{d}/broken_adapter"], ["broken_adapter", "without adapter_model.safetensors"]),
    (TXA + ["--benchmarks", "mmlu,no_such_task"], ["unknown benchmark 'no_such_task'", "choose from"]),
    (TXA + ["--benchmarks", "arc_easy,arc_easy"], ["names arc_easy more than once"]),
    (TXA + ["--benchmarks", "drift"], ["drift is a distance from the base", "no tax %"]),
    (TXA + ["--benchmarks", ","], ["--benchmarks names no benchmark"]),
    (TXA + ["--limit", "0"], ["--limit 0 must be positive"]),
    (TXA + ["--json", "{res}"], ["--json", "is a folder: give a file path"]),
    (TXA + ["--markdown", "{res}/eval.json/tax.md"], ["--markdown", "cannot be created", "eval.json is a file"]),
    (TXA + ["--json", "{res}/t.json", "--markdown", "{res}/t.json"], ["--json and --markdown are both"]),
    (TX + ["--from-study", "{d}/no_such_run"], ["--from-study", "no_such_run does not exist"]),
    (TX + ["--from-study", "{res}"], ["has no summary.json"]),
    (TX + ["--from-study", "{res}/run"], ["has no efficient strength r*", "pass --vector and --strength instead"]),
    (TXA + ["--from-study", "{res}/run"], ["--from-study gives the aligned model", "drop --aligned"]),
    (["tax", "{res}/run", "--base", "{tiny}", "--aligned", "{tiny}"], ["give either a study folder", "not both"]),
    (TX + ["--aligned", "{d}/no_such_model", "--vector", "{d}/missing.safetensors", "--strength", "nan", "--benchmarks", "nope",
           "--limit", "-1", "--json", "{res}"], ["7 problems", "(1) --json", "(7) --limit -1"]),
    # compare: folders that are not (finished) run folders, unknown tasks, other models, --out, the weight
    ([CP, "{d}/no_such_run", "--out", "{res}/cmp"], ["no_such_run does not exist", "give the --out folder of"]),
    ([CP, "{res}", "--out", "{res}/cmp"], ["is not a steertax run, align or merge output folder"]),
    ([CP, "{res}/eval.json", "--out", "{res}/cmp"], ["eval.json is a file, not a run folder"]),
    ([CP, "{d}/unfinished_run", "--out", "{res}/cmp"], ["unfinished_run has no results.sqlite", "rerun the same `steertax run`"]),
    ([CP, "{d}/align_unfinished", "--out", "{res}/cmp"], ["has no results.sqlite", "`steertax align`"]),
    ([CP, "{d}/damaged_run", "--out", "{res}/cmp"], ["manifest.json is not readable JSON", "rerun the command that wrote the folder"]),
    ([CP, "{d}/old_run", "--out", "{res}/cmp"], ["written by an older steertax (no manifest.json)", "rerun the same `steertax run`"]),
    ([CP, "{d}/run_a", "--helpfulness", "mmlu", "--out", "{res}/cmp"], ["has no task 'mmlu'", "with --helpfulness"]),
    ([CP, "{d}/run_a", "--alignment", "bias_agreement[generate]", "--out", "{res}/cmp"], ["has no task 'bias_agreement'", "--alignment"]),
    ([CP, "{d}/run_a", "{d}/run_other_model", "--out", "{res}/cmp"], ["different models", "someone/else"]),
    ([CP, "{d}/run_a", "{d}/run_a", "--out", "{res}/cmp"], ["run_a is given twice"]),
    ([CP, "{d}/run_a", "--out", "{res}/eval.json"], ["--out", "eval.json is a file: give a folder"]),
    ([CP, "{d}/run_a", "--helpfulness-weight", "1.5", "--out", "{res}/cmp"], ["--helpfulness-weight 1.5 must be in [0, 1]"]),
    ([CP, "{d}/run_a", "--helpfulness-weight", "nan", "--out", "{res}/cmp"], ["--helpfulness-weight nan must be in [0, 1]"]),
    ([CP, "{d}/no_such_run", "{res}", "--helpfulness-weight", "2", "--out", "{res}/cmp"], ["3 problems", "(3) {res} is not a steertax"]),
    # compare's decisions and its adaptive mode
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--evaluate", "--until-decided", "--budget", "0"], ["--budget 0 adds no items"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--evaluate", "--until-decided"], ["--budget None adds no items"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--until-decided", "--budget", "64"], ["--until-decided adds items", "add --evaluate"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--budget", "64"], ["--budget is the item budget of --until-decided"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--levels", "half"], ["--levels 'half' is not a comma-separated list"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--levels=-1,nan"], ["give positive finite ΔB levels"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--alpha", "1.5"], ["--alpha 1.5 must be in (0, 0.5)"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--alpha", "0.5"], ["--alpha 0.5 must be in (0, 0.5)"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--evaluate", "--until-decided", "--budget", "64", "--step=-16"],
     ["--step -16 must be a positive multiple"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--cap", "64"], ["--cap 64", "add --until-decided"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--evaluate", "--until-decided", "--budget", "64", "--spending", "pocock"],
     ["--spending pocock: unknown", "power-6"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--spending", "power-6"], ["--spending power-6", "add --until-decided"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--adjust", "bonferroni"], ["--adjust", "bonferroni"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--n-boot", "10"], ["--n-boot 10 is too few"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--limit", "32"], ["--limit 32", "add --evaluate"]),
    ([CP, "{d}/run_a", "--out", "{res}/cmp", "--evaluate", "--until-decided", "--budget", "64", "--step", "10"],
     ["--step 10 must be a positive multiple"]),
    # align: the config, its preference file, its tasks, its numbers
    ([AL, "{d}/no_such_align.yaml", "--out", "{d}/align_out"], ["align config", "does not exist"]),
    ([AL, "{d}/config_bad_yaml.yaml", "--out", "{d}/align_out"], ["not valid YAML"]),
    ([AL, "{d}/align_unknown_key.yaml", "--out", "{d}/align_out"], ["unknown key setings"]),
    ([AL, "{d}/align_prefs_wrong_columns.yaml", "--out", "{d}/align_out"],
     ["prefs_wrong_columns.jsonl row 1", "column 'prompt' is missing"]),
    ([AL, "{d}/align_prefs_empty_field.yaml", "--out", "{d}/align_out"], ["column 'rejected' is empty"]),
    ([AL, "{d}/align_prefs_missing.yaml", "--out", "{d}/align_out"], ["no_such_prefs.jsonl does not exist"]),
    ([AL, "{d}/align_unknown_task.yaml", "--out", "{d}/align_out"], ["unknown task 'no_such_task'"]),
    ([AL, "{d}/align_bad_task_option.yaml", "--out", "{d}/align_out"], ["tasks[0].options", "bad option"]),
    ([AL, "{d}/align_nan_lambda.yaml", "--out", "{d}/align_out"], ["lam", "not a finite number"]),
    ([AL, "{d}/align_nan_lr.yaml", "--out", "{d}/align_out"], ["train.lr", "not a finite number"]),
    ([AL, "{d}/align_prefs_missing.yaml", "--out", "{d}/align_out", "--ray-address", "auto"], ["--ray-address needs the ray executor"]),
    # merge: the config, the specialists' data and adapters, the merges, the tasks
    ([MG, "{d}/no_such_merge.yaml", "--out", "{d}/merge_out"], ["merge config", "does not exist"]),
    ([MG, "{d}/merge_prefs_wrong_columns.yaml", "--out", "{d}/merge_out"], ["column 'prompt' is missing"]),
    ([MG, "{d}/merge_prefs_missing.yaml", "--out", "{d}/merge_out"], ["no_such_prefs.jsonl does not exist"]),
    ([MG, "{d}/merge_adapter_missing.yaml", "--out", "{d}/merge_out"], ["no_such_adapter is not a peft adapter folder"]),
    ([MG, "{d}/merge_nan_scale.yaml", "--out", "{d}/merge_out"], ["scales", "not a finite number"]),
    ([MG, "{d}/merge_unknown_method.yaml", "--out", "{d}/merge_out"], ["'no_such_merge' is not one of"]),
    ([MG, "{d}/merge_unknown_task.yaml", "--out", "{d}/merge_out"], ["unknown task 'no_such_task'"]),
    ([MG, "{d}/merge_bad_task_option.yaml", "--out", "{d}/merge_out"], ["bad option"]),
    # align and merge: the model, the tasks' data files, a specialist model, --out (their preflight)
    ([AL, "{d}/align_unknown_model.yaml", "--out", "{d}/align_out"], ["unknown model 'no-such-model-anywhere'"]),
    ([AL, "{d}/align_task_missing_source.yaml", "--out", "{d}/align_out"], ["tasks[0] arc_easy", "nosuch.csv", "does not exist"]),
    ([AL, "{d}/align_task_wrong_columns.yaml", "--out", "{d}/align_out"], ["arc_wrong_columns.csv", "lacks column"]),
    ([AL, "{d}/align_prefs_missing.yaml", "--out", "{pairs}"], ["is a file"]),
    ([MG, "{d}/merge_unknown_model.yaml", "--out", "{d}/merge_out"], ["unknown model 'no-such-model-anywhere'"]),
    ([MG, "{d}/merge_task_missing_source.yaml", "--out", "{d}/merge_out"], ["nosuch.csv", "does not exist"]),
    ([MG, "{d}/merge_specialist_model_missing.yaml", "--out", "{d}/merge_out"], ["no_such_model"]),
    # every command's checks before any work: limits, layers, rates, token counts, vector shapes, outputs, a corrupt store
    (["eval", "--model", "{tiny}", "--task", "arc_easy", "--limit", "0"], ["--limit 0", "positive number"]),
    (["eval", "--model", "{tiny}", "--task", "arc_easy", "--limit=-1"], ["--limit -1"]),
    (["eval", "--model", "{tiny}", "--task", "arc_easy", "--vector", "{other_vec}", "--strength", "1"],
     ["hidden size 64", "hidden size 32"]),
    (["eval", "--model", "{tiny}", "--task", "arc_easy", "--json", "{res}"], ["--json", "is a folder"]),
    (["extract", "--model", "{tiny}", "--pairs", "{pairs}", "--layers", "30", "--out", "{res}/v.safetensors"], ["30"]),
    (["extract", "--model", "{tiny}", "--pairs", "{pairs}", "--layers", "4-2", "--out", "{res}/v.safetensors"], ["4-2"]),
    (["extract", "--model", "{tiny}", "--out", "{pairs}/v.safetensors"], ["cannot be created", "is a file, not a folder"]),
    (["condition", "--model", "{tiny}", "--target-fpr", "1.5", "--out", "{res}/c.safetensors"], ["--target-fpr 1.5"]),
    (["condition", "--model", "{tiny}", "--n", "1", "--out", "{res}/c.safetensors"], ["--n 1", "at least 4"]),
    (["condition", "--model", "{tiny}", "--layers", "40", "--out", "{res}/c.safetensors"], ["40"]),
    (["generate", "--model", "{tiny}", "--vector", "{vec}", "--strength", "1", "--prompt", "hi", "--max-new-tokens", "0"],
     ["--max-new-tokens 0"]),
    (["generate", "--model", "{tiny}", "--vector", "{vec}", "--strength", "1", "--prompt", ""], ["--prompt is empty"]),
    (["generate", "--model", "{tiny}", "--vector", "{other_vec}", "--strength", "1", "--prompt", "hi"], ["hidden size 64"]),
    (["run", "{d}/run_ok.yaml", "--out", "{d}/corrupt_run"], ["corrupt_run/results.sqlite is not a readable results store"]),
    (["info", "{d}/x.gguf"], ["is a GGUF file", "steertax import"]),
    ([AL, "{d}/align_negative_alpha.yaml", "--out", "{d}/align_out"], ["would invert the adapter"]),
    # LoRA targets that name no module of the model (matched against its config, without loading it)
    ([AL, "{d}/align_lora_unknown_layer.yaml", "--out", "{d}/align_out"], ["lora.targets", "match no module"]),
    ([MG, "{d}/merge_lora_unknown_layer.yaml", "--out", "{d}/merge_out"], ["lora.targets", "match no module"]),
]



@pytest.mark.parametrize("args,needles", BEFORE_LOAD, ids=[f"{a[0]}-{i}" for i, (a, _) in enumerate(BEFORE_LOAD)])
def test_refused_in_one_line_before_any_model_loads(args, needles, env, no_model, capsys):
    argv = [a.format(**env) for a in args]
    before = digest(Path(env["res"]))
    try:
        rc = main(["--quiet"] + argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (argv, err[-2000:])
    assert len(lines) == 1 and re.match(r"steertax( \w+)?: error: ", lines[0]), err  # ours, or argparse's (`steertax tax: error:`)
    for n in needles:
        assert n.format(**env) in lines[0], (n, lines[0])
    assert no_model == [], f"a model was loaded before the bad input was found: {no_model}"
    assert digest(Path(env["res"])) == before, "earlier results were changed"
    for out in ("cmp", "t.json"):
        assert not (Path(env["res"]) / out).exists(), "nothing may be written before the inputs are checked"


def test_tax_with_good_inputs_gets_to_the_model(env, no_model, tmp_path, capsys):
    """The sentinel: valid `steertax tax` inputs (a model, a vector at a strength, a finished study) pass
    every check and reach the model loader, and nothing is written before it."""
    import json as _json

    ok = ["--benchmarks", "arc_easy,truthfulqa", "--limit", "2", "--json", str(tmp_path / "out" / "tax.json")]
    study = tmp_path / "study"
    study.mkdir()
    (study / "summary.json").write_text(_json.dumps({"efficient_strength": {"ok": True, "r_star": 2.5}, "vector": {"file": env["vec"]}}))
    for how in (["--aligned", env["tiny"]], ["--vector", env["vec"], "--strength", "2"], ["--from-study", str(study)]):
        no_model.clear()
        assert main(["--quiet", "tax", "--base", env["tiny"], *how, *ok]) == 1  # ModelLoaded: an "internal error" here
        err = capsys.readouterr().err
        assert "ModelLoaded" in err
        assert no_model == [env["tiny"]], (how, err)
    assert not (tmp_path / "out").exists()


def test_measure_alignment_tax_checks_everything_first(env, no_model):
    """The library entry point runs the same checks (all problems in one typed error, `.problems`)."""
    from steertax.errors import StrengthError
    from steertax.runners.tax import check_alignment_tax, measure_alignment_tax

    with pytest.raises(VectorError) as ei:
        measure_alignment_tax(env["tiny"], vector=f"{env['d']}/missing.safetensors", strength=float("nan"), benchmarks=["mmlu", "nope"])
    assert [type(p) for p in ei.value.problems] == [VectorError, StrengthError, ConfigError]
    assert "\n" not in str(ei.value) and str(ei.value).startswith("3 problems")
    assert check_alignment_tax(env["tiny"], env["tiny"], benchmarks=["arc_easy"]) == []
    assert check_alignment_tax(env["tiny"], vector=env["vec"], strength=3.0) == []
    assert no_model == []


@pytest.mark.parametrize("cmd", ["align", "merge"])
def test_bad_preferences_create_no_output_folder(cmd, env, no_model, tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["--quiet", cmd, f"{env['d']}/{cmd}_prefs_wrong_columns.yaml", "--out", str(out)]) == 2
    assert "column 'prompt' is missing" in capsys.readouterr().err
    assert no_model == []
    assert not out.exists(), "nothing may be written before the inputs are checked"
