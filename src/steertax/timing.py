"""Where a run's time goes: seconds per (task, scorer), accumulated in this process.

:func:`steertax.tasks.evaluate` charges every call to its task and scorer (a task that runs two scorers,
refusal's logprob and generate, charges each section itself); executors add their workers' splits, so a
run can print one table at its end (:func:`format_split`) and write it beside its results.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from typing import Iterator, Mapping

__all__ = ["add", "section", "snapshot", "since", "merge", "format_split"]

_SECONDS: dict[tuple[str, str], float] = defaultdict(float)
_ROWS: dict[tuple[str, str], int] = defaultdict(int)


def add(task: str, scorer: str, seconds: float, rows: int = 0) -> None:
    _SECONDS[(task, scorer)] += seconds
    _ROWS[(task, scorer)] += rows


@contextlib.contextmanager
def section(task: str, scorer: str) -> Iterator[None]:
    """Charge the block's wall time to (task, scorer)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        add(task, scorer, time.perf_counter() - t0)


def snapshot() -> dict[str, tuple[float, int]]:
    """The totals so far, keyed ``task/scorer`` (picklable, for a worker to send back)."""
    return {f"{t}/{s}": (_SECONDS[(t, s)], _ROWS[(t, s)]) for t, s in list(_SECONDS)}


def since(before: Mapping[str, tuple[float, int]]) -> dict[str, tuple[float, int]]:
    """What was charged after ``before`` (a :func:`snapshot`)."""
    out = {}
    for k, (sec, rows) in snapshot().items():
        s0, r0 = before.get(k, (0.0, 0))
        if sec - s0 > 0 or rows - r0 > 0:
            out[k] = (sec - s0, rows - r0)
    return out


def merge(split: Mapping[str, tuple[float, int]]) -> None:
    """Add another process's split (a worker's :func:`since`) to this one's."""
    for k, (sec, rows) in split.items():
        t, _, s = k.rpartition("/")
        add(t, s, sec, rows)


def format_split(split: Mapping[str, tuple[float, int]], wall: float | None = None) -> str:
    """A plain-text table, longest first: task/scorer, seconds, share, rows."""
    total = sum(v[0] for v in split.values())
    if not split:
        return "time split: nothing was evaluated in this invocation (every cell was already stored)"
    lines = [f"time split ({total:.1f} s of evaluation" + (f" in {wall:.1f} s wall" if wall is not None else "") + "):"]
    width = max(len(k) for k in split)
    for k, (sec, rows) in sorted(split.items(), key=lambda kv: -kv[1][0]):
        share = 100 * sec / total if total > 0 else 0.0
        lines.append(f"  {k:<{width}}  {sec:8.1f} s  {share:5.1f} %  {rows:7d} rows")
    return "\n".join(lines)
