"""Durable results: SIGKILL at seeded points, resume, and get exactly the uninterrupted rows.

The worker kills itself at an exact point (``STEERTAX_TEST_KILL_AT``, steertax._faults): inside its N-th cell
transaction before COMMIT, or right after its N-th COMMIT, so every kill lands whatever the machine's speed."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from steertax import DataError
from steertax._faults import ENV
from steertax.store import ResultStore

WORKER = str(Path(__file__).parent / "_sweep_worker.py")


def run_worker(db, kill_at=None):
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env.update(TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    if kill_at is not None:
        env[ENV] = kill_at
    p = subprocess.run([sys.executable, WORKER, str(db)], capture_output=True, timeout=600, env=env)
    want = 0 if kill_at is None else -signal.SIGKILL  # a kill always lands, at that point
    assert p.returncode == want, (kill_at, p.returncode, p.stderr.decode()[-2000:])


def canonical(db):
    with ResultStore(db) as s:
        recs = s.records("run1")
        cells = {(t, c) for t in ("arc_easy", "refusal", "drift") for c in s.done_cells("run1", t)}
    return sorted((r["task"], r["item"], r["strength"], r["scorer"], tuple(sorted(r.items()))) for r in recs), cells


def committed(db):
    """The committed cells (task, cell, rows), in commit order."""
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT task, cell, n_rows FROM cells ORDER BY rowid").fetchall()
    finally:
        con.close()


def test_sigkill_resume_equals_uninterrupted(tmp_path):
    ref = tmp_path / "ref.sqlite"
    run_worker(ref)
    want, want_cells = canonical(ref)
    order = committed(ref)
    assert len(want) == 24 * 4 + 24 * 4 + 8 * 4 and len(order) == 6 + 6 + 2
    db = tmp_path / "killed.sqlite"
    rng = random.Random(0)
    done, partial = 0, 0
    for _ in range(8):
        point, n = rng.choice(["cell", "in-cell"]), rng.randint(1, 2)
        if done + n >= len(order):  # keep a cell to do
            point, n = "in-cell", 1
        run_worker(db, kill_at=f"{point}:{n}")
        done += n if point == "cell" else n - 1  # in-cell: the N-th transaction dies before its COMMIT
        got, _ = canonical(db)
        # only whole cells: exactly the cells committed before the kill, with all their rows, nothing duplicated
        assert committed(db) == order[:done]
        assert len(got) == len(set(x[:4] for x in got)) == sum(n for *_, n in order[:done])
        assert all(x in want for x in got)  # every row a row of the uninterrupted run
        partial += 0 < len(got) < len(want)
    assert (done, partial) == (8, 8)  # 8 kills: the first dies inside its 2nd cell, so every kill left a partial store
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
