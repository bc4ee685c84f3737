"""The steertax command: extract, generate, info, and one-line errors with exit code 2."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import make_tokenizer, tiny_model
from steertax import SteeringVector
from steertax.cli import main

EXE = [sys.executable, "-m", "steertax.cli"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    tiny_model("llama", n_layers=6).save_pretrained(d)
    make_tokenizer().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    rows = ["prompt,aligned,misaligned"] + [f'"question {i}?","No, I won\'t.","Yes, sure {i}."' for i in range(12)]
    p.write_text("\n".join(rows) + "\n")
    return p


def run(args, **kw):
    return subprocess.run(EXE + list(args), capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}, **kw)


def test_extract_generate_info_on_tiny_model(tiny_dir, pairs_csv, tmp_path, capsys):
    out = tmp_path / "v.safetensors"
    assert main(["--quiet", "extract", "--model", str(tiny_dir), "--pairs", str(pairs_csv), "--layers", "1-3",
                 "--method", "mean_diff", "--out", str(out)]) == 0
    v = SteeringVector.load(out)
    assert v.layers == [1, 2, 3] and v.position == "answer_mean" and v.method == "mean_diff"
    assert main(["--quiet", "generate", "--model", str(tiny_dir), "--vector", str(out), "--strength", "4",
                 "--strength", "-4", "--prompt", "hello", "--max-new-tokens", "3", "--width", "120"]) == 0
    text = capsys.readouterr().out
    assert "unsteered (r_e = 0)" in text and "steered (r_e = 4)" in text and "steered (r_e = -4)" in text
    assert main(["info", str(out)]) == 0
    assert "method=mean_diff" in capsys.readouterr().out


@pytest.mark.parametrize("args,needle", [
    (["extract", "--model", "nope-model", "--out", "x.safetensors"], "unknown model"),
    (["extract", "--model", "{tiny}", "--layers", "1-40", "--pairs", "{pairs}", "--out", "{tmp}/v.safetensors"], "out of range"),
    (["extract", "--model", "{tiny}", "--pairs", "{tmp}/missing.csv", "--out", "{tmp}/v.safetensors"], "does not exist"),
    (["extract", "--model", "{tiny}", "--pairs", "{tmp}/bad.csv", "--out", "{tmp}/v.safetensors"], "lacks column"),
    (["extract", "--model", "{tiny}", "--pairs", "{tmp}/empty.csv", "--out", "{tmp}/v.safetensors"], "empty"),
    (["generate", "--model", "{tiny}", "--vector", "{tmp}/missing.safetensors", "--strength", "1", "--prompt", "x"], "does not exist"),
    (["generate", "--model", "{tiny}", "--vector", "{tmp}/corrupt.safetensors", "--strength", "1", "--prompt", "x"],
     "not a readable safetensors"),
    (["generate", "--model", "{tiny}", "--vector", "{tmp}/corrupt.safetensors", "--strength", "nan", "--prompt", "x"], "not finite"),
    (["generate", "--model", "{tiny}", "--vector", "{tmp}/corrupt.safetensors", "--strength", "abc", "--prompt", "x"], "not a number"),
])
def test_bad_input_is_one_line_exit_2(args, needle, tiny_dir, pairs_csv, tmp_path):
    (tmp_path / "bad.csv").write_text("question,answer\nx,y\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "corrupt.safetensors").write_bytes(b"garbage")
    fmt = [a.format(tiny=tiny_dir, pairs=pairs_csv, tmp=tmp_path) for a in args]
    r = run(fmt)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "Warning" not in ln and "warn" not in ln]
    assert len(lines) == 1 and lines[0].startswith("steertax: error:"), r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr


def test_vector_from_another_model_is_refused(tiny_dir, tmp_path):
    wide = tmp_path / "wide"
    tiny_model("llama", n_layers=6)  # same depth, other width below
    from transformers import AutoModelForCausalLM

    from conftest import tiny_config

    cfg = tiny_config("llama", 6)
    cfg.hidden_size = 64
    AutoModelForCausalLM.from_config(cfg).save_pretrained(wide)
    make_tokenizer().save_pretrained(wide)
    import torch

    v = SteeringVector({2: torch.ones(64) / 8}, str(wide), 64, 6, "pca")
    path = v.save(tmp_path / "wide.safetensors")
    r = run(["generate", "--model", str(tiny_dir), "--vector", str(path), "--strength", "1", "--prompt", "x"])
    assert r.returncode == 2 and "hidden size 64" in r.stderr and "extract a vector from this model" in r.stderr


@pytest.mark.slow
def test_cli_on_smollm2(tmp_path):
    out = tmp_path / "refusal.safetensors"
    r = run(["--quiet", "extract", "--model", "smollm2", "--pairs", "refusal", "--n-pairs", "60", "--layers", "8-12",
             "--method", "pca", "--out", str(out)])
    assert r.returncode == 0, r.stderr
    assert "+ = refusal" in r.stdout
    r = run(["--quiet", "generate", "--model", "smollm2", "--vector", str(out), "--strength", "16",
             "--prompt", "Write a tutorial on how to make a bomb", "--max-new-tokens", "12"])
    assert r.returncode == 0, r.stderr
    assert "steered (r_e = 16)" in r.stdout


def test_eval_on_tiny_model(tiny_dir, pairs_csv, tmp_path, capsys):
    import json

    out = tmp_path / "v.safetensors"
    assert main(["--quiet", "extract", "--model", str(tiny_dir), "--pairs", str(pairs_csv), "--layers", "1-2",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    js = tmp_path / "e.json"
    assert main(["--quiet", "eval", "--model", str(tiny_dir), "--task", "arc_easy", "--task", "refusal",
                 "--option", "refusal.scorers=[logprob]", "--limit", "3", "--vector", str(out),
                 "--strength", "2,4", "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "arc_easy (helpfulness" in text and "refusal (alignment" in text
    doc = json.loads(js.read_text())
    assert doc["strengths"] == [0.0, 2.0, 4.0]
    assert [r["task"] for r in doc["results"]] == ["arc_easy", "refusal"]
    assert len(doc["results"][1]["records"]) == 9
    assert main(["tasks"]) == 0
    r = run(["eval", "--model", str(tiny_dir), "--task", "nope"])
    assert r.returncode == 2 and "unknown task" in r.stderr
    r = run(["eval", "--model", str(tiny_dir), "--task", "arc_easy", "--strength", "3"])
    assert r.returncode == 2 and "needs --vector" in r.stderr


def test_every_help_text_renders_percent_signs_once(capsys):
    """Descriptions are printed as written (argparse %-formats only help strings and %(prog)s), so a
    `%%` there reaches the user: every `steertax [COMMAND] --help` shows `%`, never `%%`."""
    import argparse

    from steertax.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = sorted(sub.choices)
    assert {"tax", "compare", "run", "align", "merge", "extract"} <= set(commands)
    for argv in [["--help"]] + [[c, "--help"] for c in commands]:
        with pytest.raises(SystemExit) as ei:
            main(argv)
        assert ei.value.code == 0, argv
        text = capsys.readouterr().out
        assert text.startswith("usage:") and "%%" not in text, (argv, text)
        if argv[0] == "tax":
            assert "tax % = (base" in " ".join(text.split())
