"""Durable results: SIGKILL at random points, resume, and get exactly the uninterrupted rows."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steertax import DataError
from steertax.store import ResultStore

WORKER = str(Path(__file__).parent / "_sweep_worker.py")


def run_worker(db, kill_after=None):
    p = subprocess.Popen([sys.executable, WORKER, str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"})
    if kill_after is None:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
        return True
    time.sleep(kill_after)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return False
    return True


def canonical(db):
    with ResultStore(db) as s:
        recs = s.records("run1")
        cells = {(t, c) for t in ("arc_easy", "refusal", "drift") for c in s.done_cells("run1", t)}
    return sorted((r["task"], r["item"], r["strength"], r["scorer"], tuple(sorted(r.items()))) for r in recs), cells


def test_sigkill_resume_equals_uninterrupted(tmp_path):
    ref = tmp_path / "ref.sqlite"
    run_worker(ref)
    want, want_cells = canonical(ref)
    assert len(want) == 24 * 4 + 24 * 4 + 8 * 4
    db = tmp_path / "killed.sqlite"
    rng = random.Random(0)
    kills = 0
    for _ in range(8):
        if not run_worker(db, kill_after=rng.uniform(2.5, 6.0)):
            kills += 1
            got, _ = canonical(db)
            # only whole cells: every (task, cell) written has all its rows, nothing is duplicated
            assert len(got) == len(set(x[:4] for x in got))
    assert kills >= 5
    run_worker(db)
    got, cells = canonical(db)
    assert got == want and cells == want_cells


def test_store_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="not a steertax results database"):
        ResultStore(bad)


def test_parquet_export(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as s:
        s.begin_run("r", {}, "now")
        s.write_cell("r", "t", "0", [{"item": "a", "strength": 0.0, "scorer": "logprob", "B": 0.5, "text": "hi"},
                                     {"item": "a", "strength": 2.0, "scorer": "logprob", "B": float("nan")}], "now")
        path = s.to_parquet(tmp_path / "r.parquet", "r")
    import pandas as pd

    df = pd.read_parquet(path)
    assert len(df) == 2 and set(df.columns) >= {"task", "item", "strength", "scorer", "B"}
