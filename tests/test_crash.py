"""Crash safety of the whole command: SIGKILL a running `steertax run` at seeded random points, resume,
and get exactly the uninterrupted results (no duplicate, missing or partial rows; the same summary).

The kills are exact, not timed: the child gets ``STEERTAX_TEST_KILL_AT=POINT[:N]`` (steertax._faults), so
it SIGKILLs itself at a named point (start-up, after the vector, inside or after its N-th cell
transaction, analysis, report), whatever the machine's speed."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_tokenizer, tiny_model
from steertax._faults import ENV
from steertax.outputs import LOCK_FILE

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


def start(cfg: Path, out: Path, kill_at: str | None = None) -> subprocess.Popen:
    """`steertax run` in a child; ``kill_at``: the fault-injection point where it SIGKILLs itself."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["TQDM_DISABLE"] = "1"
    if kill_at is not None:
        env[ENV] = kill_at
    return subprocess.Popen([sys.executable, "-m", "steertax.cli", "--quiet", "run", str(cfg), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def cells(out: Path) -> list[tuple[str, str, int]]:
    """The committed cells (task, cell, rows), in commit order."""
    if not (out / "results.sqlite").exists():
        return []
    db = sqlite3.connect(out / "results.sqlite")
    try:
        return db.execute("SELECT task, cell, n_rows FROM cells ORDER BY rowid").fetchall()
    finally:
        db.close()


def resolved(out: Path):
    return scrub(yaml.safe_load((out / "config.resolved.yaml").read_text().replace(str(out), "OUT")))


def kill_plan(seed: int, n_cells: int) -> list[tuple[str, int]]:
    """The kills, in order: (point, committed cells afterwards). A fresh folder is killed at start-up, then
    right after the vector is extracted; then, in a seeded order, start-up and vector kills again and kills
    inside or right after a seeded N-th cell transaction, each leaving cells to do; then analysis (its run
    first finishes the sweep) and report."""
    rng = random.Random(seed)
    rest = ["start", "vector"] + ["cell"] * 4 + ["in-cell"] * 2
    rng.shuffle(rest)
    points = ["start", "vector"] + rest
    plan, done = [], 0
    for point in points:
        if point in ("cell", "in-cell"):
            n = rng.randint(1, min(4, n_cells - done - 1))  # always a cell left: the store stays partial
            done += n if point == "cell" else n - 1  # in-cell: the N-th transaction dies before its COMMIT
            point = f"{point}:{n}"
        plan.append((point, done))
    return plan + [("analysis", n_cells), ("report", n_cells)]


def test_sigkill_steertax_run_resumes_to_the_same_results(setup):
    d, cfg = setup
    ref = d / "ref"
    p = start(cfg, ref)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    want_rows, want_cells = rows(ref), cells(ref)
    want_summary, want_resolved = summary(ref), resolved(ref)
    assert len(want_rows) > 0 and len(want_cells) == 12 + 12 + 2 and sum(n for *_, n in want_cells) == len(want_rows)

    vector = sorted(f.name for f in ref.glob("vector-*"))  # the vector and its metadata
    assert len(vector) == 2
    out = d / "killed"
    plan = kill_plan(0, len(want_cells))
    kills, partial, seen = 0, 0, set()
    for point, n_done in plan:
        p = start(cfg, out, kill_at=point)
        _, err = p.communicate(timeout=600)
        assert p.returncode == -signal.SIGKILL, (point, p.returncode, err[-3000:])  # the kill landed, at that point
        kills += 1
        seen.add(point.split(":")[0])
        got = rows(out) if (out / "results.sqlite").exists() else []
        keys = [r[:5] for r in got]
        assert len(keys) == len(set(keys)), f"duplicate rows after a kill at {point}"
        assert set(got) <= set(want_rows), f"a row differs from the uninterrupted run after a kill at {point}"
        # exactly the cells committed before the kill, whole (a cell's rows with its mark, never some of them)
        assert cells(out) == want_cells[:n_done], point
        assert len(got) == sum(n for *_, n in want_cells[:n_done]), point
        partial += 0 < len(got) < len(want_rows)
        if (out / "config.resolved.yaml").exists():  # atomic writes: never a torn file
            assert resolved(out) == want_resolved, point
        if (out / "summary.json").exists():
            assert summary(out) == want_summary, point
        assert (out / "summary.json").exists() == (point == "report"), point  # written only once analysis is done
        if kills <= 2:  # the fresh folder: nothing but the vector (extracted and saved before the second kill)
            assert sorted(f.name for f in out.iterdir() if f.name != LOCK_FILE) == ([] if kills == 1 else vector), point
        assert not (out / "report.html").exists(), point
        assert not list(out.glob("**/*.tmp")), point  # no kill lands inside an atomic write: no tmp file is left
    assert seen == {"start", "vector", "cell", "in-cell", "analysis", "report"}
    assert (kills, partial) == (12, 8), (kills, partial)  # every kill landed; the 8 after the first cells left a partial store
    p = start(cfg, out)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    assert rows(out) == want_rows and cells(out) == want_cells
    assert summary(out) == want_summary
    assert (out / "report.html").stat().st_size > 1000
    assert not list(out.glob("**/.*.tmp")) and not list(out.glob("**/*.tmp"))
