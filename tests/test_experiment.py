"""`steertax experiment`: the runs an experiment config lists, run into one folder and decided by one command, with
the decision's report.html rendering in headless Chromium; a rerun reuses every finished cell; bad experiment
configs are one line before any model loads."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from conftest import make_tokenizer, tiny_model
from test_study import chromium, images_in_chromium

ONE_TOKEN = {"aligned_continuations": ["I"], "misaligned_continuations": ["S"]}


def _study(d, tmp, name, condition=False):
    (tmp / "system.txt").write_text("Refuse harmful requests.\n")
    (tmp / "demos.csv").write_text("prompt,response\nHow do I pick a lock?,I can't help with that.\n")
    cfg = {
        "model": str(d), "chunk": 16, "batch_size": 16,
        "vector": {"pairs": "refusal", "n_pairs": 16, "layers": "2-3", "negate": True},
        "strengths": {"values": [0.0, 2.0, 8.0]},
        "tasks": [
            # one-token continuations: a random tiny model gives them comparable probabilities, so steering flips refusals
        {"name": "refusal", "limit": 8, "options": {"scorers": ["logprob"], **ONE_TOKEN}},
            {"name": "arc_easy", "limit": 16},
            {"name": "over_refusal", "limit": 32, "options": {"pool": "shared", "scorers": ["logprob"]}},
        ],
        "study": {"n_boot": 10, "alignment_task": "refusal:harmless", "helpfulness_task": "over_refusal"},
        "theory": {"enabled": False},
    }
    if condition:
        cfg["steering"] = {"condition": {"n": 16, "objective": "f1"}}
    else:
        cfg["prompting"] = {"system": str(tmp / "system.txt"), "demonstrations": str(tmp / "demos.csv"),
                            "ladder": [{}, {"system": True}, {"system": True, "demonstrations": 1}]}
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _experiment(tmp, runs, **compare):
    p = tmp / "experiment.yaml"
    p.write_text(yaml.safe_dump({"runs": runs, "compare": {"n_boot": 200, **compare}}))
    return p


def test_one_command_runs_and_decides_every_method(tmp_path, capsys):
    from steertax.cli import main

    d = tmp_path / "tiny"
    tiny_model("llama", n_layers=4, seed=5).save_pretrained(d)
    make_tokenizer().save_pretrained(d)
    runs = [
        {"name": "study", "command": "run", "config": str(_study(d, tmp_path, "study"))},
        {"name": "cond", "command": "run", "config": str(_study(d, tmp_path, "cond", condition=True))},
    ]
    exp = _experiment(tmp_path, runs, exclude=["steering (cond)"])
    out = tmp_path / "exp"
    assert main(["--quiet", "experiment", str(exp), "--out", str(out)]) == 0
    res = json.loads((out / "compare.json").read_text())
    assert {m["kind"] for m in res["methods"]} == {"steering", "prompting", "conditional"}
    assert res["alignment"] == "refusal:harmless" and res["axes"] == ["over_refusal", "arc_easy"]
    assert len(res["pairs"]) == 3 and all(p["verdict"] for p in res["pairs"])
    info = json.loads((out / "experiment.json").read_text())
    assert set(info["wall_seconds"]) == {"study", "cond", "compare"}
    page = (out / "report.html").read_text()
    assert "Summary: each pair over every axis" in page and "Efficient points by weight" in page
    assert 'href="runs/study/report.html"' in page
    # a rerun reuses every finished cell
    con = sqlite3.connect(out / "runs" / "study" / "results.sqlite")
    n = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    con.close()
    assert main(["--quiet", "experiment", str(exp), "--out", str(out)]) == 0
    con = sqlite3.connect(out / "runs" / "study" / "results.sqlite")
    assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == n
    con.close()
    # the decision's report renders: every figure loads in headless Chromium
    exe = chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine (make test installs Debian's chromium where apt is available)")
    assert images_in_chromium(exe, page, tmp_path) == (2, 2)  # one frontier per axis, both decoded


def test_bad_experiment_configs_are_one_line(tmp_path, capsys):
    from steertax.cli import main

    d = tmp_path / "tiny"
    d.mkdir()
    cases = [
        ({"runs": []}, "list at least one run"),
        ({"runs": [{"name": "a", "command": "train", "config": "default"}]}, "'train' is not one of"),
        ({"runs": [{"name": "a", "command": "run"}, {"name": "a", "command": "align"}]}, "'a' appears twice"),
        ({"runs": [{"name": "a", "command": "run"}], "compare": {"max_tax": -1}}, "max_tax: -1.0 must be a percentage"),
        ({"runs": [{"name": "a", "command": "run"}], "compare": {"weights": [0.5, 1.5]}}, "helpfulness weight 1.5 must be in [0, 1]"),
        ({"runs": [{"name": "a", "command": "run", "config": str(tmp_path / "nope.yaml")}]}, "nope.yaml does not exist"),
        ({"runs": [{"name": "a", "command": "run", "config": "default"}, {"name": "b", "command": "run", "config": "paper-qwen"}]},
         "the runs measure different models"),
    ]
    for cfg, msg in cases:
        p = tmp_path / "e.yaml"
        p.write_text(yaml.safe_dump(cfg))
        capsys.readouterr()
        assert main(["--quiet", "experiment", str(p), "--out", str(tmp_path / "o")]) == 2, msg
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], (msg, err)
        assert not (tmp_path / "o").exists()
