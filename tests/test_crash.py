"""Crash safety of the whole command: SIGKILL a running `steertax run` at seeded random points, resume,
and get exactly the uninterrupted results (no duplicate, missing or partial rows; the same summary)."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import make_tokenizer, tiny_model

CONFIG = """\
model: {tiny}
seed: 0
batch_size: 8
chunk: 2
vector:
  pairs: {pairs}
  n_pairs: 12
  method: pca
  layers: "1-2"
strengths:
  values: [0, 1, 2, 3, 4, 6]
tasks:
  - name: refusal
    limit: 24
    options: {{scorers: [logprob]}}
  - name: arc_easy
    limit: 24
  - name: drift
    limit: 4
study:
  n_boot: 20
theory:
  n_prompts: 4
"""

VOLATILE = {"created", "finished", "elapsed_s", "versions", "out", "generated"}


def scrub(x):
    if isinstance(x, dict):
        return {k: scrub(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [scrub(v) for v in x]
    return x


def summary(out: Path):
    return scrub(json.loads((out / "summary.json").read_text().replace(str(out), "OUT")))


def rows(out: Path):
    db = sqlite3.connect(out / "results.sqlite")
    try:
        got = db.execute("SELECT * FROM results ORDER BY 1, 2, 3, 4, 5").fetchall()
    finally:
        db.close()
    return got


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny_study(tmp_path_factory.mktemp("crash"))


def tiny_study(d: Path) -> tuple[Path, Path]:
    """A tiny random-init model, 16 contrast pairs and the study config above, in ``d``."""
    tiny = d / "tiny"
    tiny_model("llama", n_layers=4, seed=2).save_pretrained(tiny)
    make_tokenizer().save_pretrained(tiny)
    pairs = d / "pairs.csv"
    pairs.write_text("prompt,aligned,misaligned\n" + "".join(f'"q {i}?","No, I won\'t.","Yes, sure {i}."\n' for i in range(16)))
    cfg = d / "tiny.yaml"
    cfg.write_text(CONFIG.format(tiny=tiny, pairs=pairs))
    return d, cfg


def start(cfg: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "steertax.cli", "--quiet", "run", str(cfg), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TQDM_DISABLE": "1"})


def test_sigkill_steertax_run_resumes_to_the_same_results(setup):
    d, cfg = setup
    ref = d / "ref"
    t0 = time.time()
    p = start(cfg, ref)
    _, err = p.communicate(timeout=600)
    wall = time.time() - t0
    assert p.returncode == 0, err[-3000:]
    want_rows = rows(ref)
    want_summary = summary(ref)
    assert len(want_rows) > 0

    out = d / "killed"
    rng = random.Random(1234)
    total = len(want_rows)

    def count() -> int:
        try:
            return len(rows(out)) if (out / "results.sqlite").exists() else 0
        except sqlite3.Error:
            return 0

    kills, partial = 0, 0
    for k in range(12):
        now = count()
        p = start(cfg, out)
        if k % 3 == 2 or now >= total - 2:  # a kill at a random time: start-up, extraction, analysis, report
            time.sleep(rng.uniform(0.3, 1.0) * wall)
        else:  # a kill at a random point of the sweep: once the store holds a seeded number of rows
            target = rng.randint(now + 1, total - 1)
            while p.poll() is None and count() < target:
                time.sleep(0.01)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.communicate()
        if (out / "results.sqlite").exists():
            got = rows(out)
            keys = [r[:5] for r in got]
            assert len(keys) == len(set(keys)), "duplicate rows after a kill"
            assert set(got) <= set(want_rows), "a row differs from the uninterrupted run"
            partial += 0 < len(got) < total
        for f in ("summary.json", "config.resolved.yaml"):
            if (out / f).exists():  # atomic writes: never a torn file
                text = (out / f).read_text()
                assert isinstance(json.loads(text) if f.endswith(".json") else yaml.safe_load(text), dict)
        if kills >= 6 and partial >= 3:
            break
    assert kills >= 5 and partial >= 3, (kills, partial)  # several kills landed mid-sweep
    p = start(cfg, out)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    assert rows(out) == want_rows
    assert summary(out) == want_summary
    assert (out / "report.html").stat().st_size > 1000
    assert not list(out.glob("**/.*.tmp")) and not list(out.glob("**/*.tmp"))
