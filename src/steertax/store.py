"""Durable, append-only results: SQLite in WAL mode, one row per (task, item, strength, scorer).

A sweep is split into cells (a task and a chunk of its items, all strengths); each cell's rows and
its completion mark are written in one transaction, so a killed process leaves only whole cells and
a rerun skips them. Rows are keyed by the run's config hash: a changed config is a new run.

Every row names its intervention: ``method`` (``steering``, ``base``, ``dpo``, ``dpo_reg``, ``sft``,
``selective``, ...) and ``setting`` (steering: the strength r_e; a trained adapter: its label such as
``beta=0.1``), so fits, reports and comparisons treat every way of aligning a model alike.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sqlite3
from pathlib import Path
from typing import Any, Sequence

from steertax._faults import checkpoint
from steertax._util import atomic_write_bytes
from steertax.errors import DataError

__all__ = ["ResultStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, config TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    run_id TEXT NOT NULL, task TEXT NOT NULL, cell TEXT NOT NULL, n_rows INTEGER NOT NULL, done_at TEXT NOT NULL,
    PRIMARY KEY (run_id, task, cell));
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL, task TEXT NOT NULL, item TEXT NOT NULL, strength REAL NOT NULL, scorer TEXT NOT NULL,
    data TEXT NOT NULL, method TEXT NOT NULL DEFAULT 'steering', setting TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, task, item, strength, scorer));
"""


def _clean(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


class ResultStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
            cols = {r[1] for r in self.db.execute("PRAGMA table_info(results)")}
            for col, default in (("method", "'steering'"), ("setting", "''")):  # a store written before interventions
                if col not in cols:
                    self.db.execute(f"ALTER TABLE results ADD COLUMN {col} TEXT NOT NULL DEFAULT {default}")
        except sqlite3.DatabaseError as e:
            raise DataError(
                f"{self.path} is not a steertax results database ({e}): move it away (a run starts over), "
                "or point at the run folder that holds yours"
            ) from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ runs
    def begin_run(self, run_id: str, config: dict[str, Any], created: str) -> None:
        row = self.db.execute("SELECT config FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            self.db.execute("INSERT INTO runs VALUES (?,?,?)", (run_id, json.dumps(config, sort_keys=True), created))

    def runs(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT run_id FROM runs ORDER BY created")]

    # ------------------------------------------------------------------ cells
    def done_cells(self, run_id: str, task: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT cell FROM cells WHERE run_id=? AND task=?", (run_id, task))}

    def write_cell(
        self,
        run_id: str,
        task: str,
        cell: str,
        records: Sequence[dict[str, Any]],
        done_at: str,
        *,
        method: str = "steering",
        setting: str | None = None,
    ) -> None:
        """Insert a cell's rows and its completion mark atomically. ``setting`` defaults to each row's
        strength (steering's setting is r_e)."""
        rows = []
        for r in records:
            data = {k: _clean(v) for k, v in r.items() if k not in ("item", "strength", "scorer", "task", "method", "setting")}
            s = float(r["strength"])
            rows.append(
                (run_id, task, str(r["item"]), s, str(r.get("scorer", "")), json.dumps(data, sort_keys=True), method, setting or f"{s:g}")
            )
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.executemany(
                "INSERT INTO results (run_id, task, item, strength, scorer, data, method, setting) VALUES (?,?,?,?,?,?,?,?)", rows
            )
            cur.execute("INSERT INTO cells VALUES (?,?,?,?,?)", (run_id, task, cell, len(rows), done_at))
            checkpoint("in-cell")  # test-only fault injection (steertax._faults)
            cur.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # a failed COMMIT (disk full) may have ended it: never mask the real error
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
            raise
        checkpoint("cell")

    # ------------------------------------------------------------------ reads
    def records(self, run_id: str, task: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT task, item, strength, scorer, data, method, setting FROM results WHERE run_id=?"
        args: list[Any] = [run_id]
        if task is not None:
            q += " AND task=?"
            args.append(task)
        q += " ORDER BY task, scorer, strength, item"
        out = []
        for t, item, s, sc, data, method, setting in self.db.execute(q, args):
            out.append({"task": t, "item": item, "strength": s, "scorer": sc, **json.loads(data), "method": method, "setting": setting})
        return out

    def count(self, run_id: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM results WHERE run_id=?", (run_id,)).fetchone()[0])

    def to_parquet(self, path: str | Path, run_id: str) -> Path:
        """Export a run's rows (one column per score field) to Parquet for pandas users."""
        return self.to_parquet_many(path, [run_id])

    def to_parquet_many(self, path: str | Path, run_ids: Sequence[str]) -> Path:
        """Export several runs' rows (e.g. every setting of an align run) to one Parquet file."""
        import pandas as pd

        df = pd.DataFrame([r for rid in run_ids for r in self.records(rid)])
        for c in df.columns:
            if df[c].dtype == object and df[c].map(lambda v: isinstance(v, (list, dict))).any():
                df[c] = df[c].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(path, buf.getvalue())
        return Path(path)
