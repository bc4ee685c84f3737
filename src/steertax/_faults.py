"""Test-only fault injection: SIGKILL this process at a named point of a run. Never set in production.

The crash tests kill ``steertax run`` (and ``align``, a bare sweep, the Ray driver) at exact points
instead of guessing with wall-clock sleeps. They set, in the child's environment only::

    STEERTAX_TEST_KILL_AT=POINT      # kill at the first time POINT is reached
    STEERTAX_TEST_KILL_AT=POINT:N    # kill at the N-th time POINT is reached in this process

When POINT is reached for that time the process sends itself SIGKILL: no cleanup, no ``finally``,
no flush, exactly like an OOM kill or a power cut. Points (where ``checkpoint`` is called):

``start``     ``study.run_study``: inputs checked, out dir made, before the model loads
``vector``    ``study.run_study``: the steering vector extracted (and saved) or loaded
``in-cell``   ``store.ResultStore.write_cell``: a cell's rows and mark inserted, before COMMIT
``cell``      ``store.ResultStore.write_cell``: right after a cell's COMMIT (``cell:3``: the 3rd
              cell this process committed, whichever sweep or executor wrote it)
``analysis``  ``study.analyze``: results.parquet written, before summary.json is written
``report``    ``report.write_report``: figures written, before report.html is written
``adapter``   ``align.run_align``: a trained adapter moved into place, before it is evaluated

``STEERTAX_TEST_HOLD_AT=POINT:PATH`` instead holds the process at POINT until the file PATH exists (at most
120 s): a concurrency test starts a second command while the first is known to be inside its work.

Unset (always, outside the tests), ``checkpoint`` is two environment lookups and returns.
"""

from __future__ import annotations

import os
import signal
import time

__all__ = ["ENV", "HOLD_ENV", "POINTS", "checkpoint"]

ENV = "STEERTAX_TEST_KILL_AT"
HOLD_ENV = "STEERTAX_TEST_HOLD_AT"
POINTS = frozenset({"start", "vector", "in-cell", "cell", "analysis", "report", "adapter"})

_hits: dict[str, int] = {}


def checkpoint(point: str) -> None:
    """SIGKILL this process if ``$STEERTAX_TEST_KILL_AT`` names ``point`` (and this is its N-th hit); hold it
    while ``$STEERTAX_TEST_HOLD_AT`` names ``point`` and its file does not exist yet."""
    hold = os.environ.get(HOLD_ENV)
    if hold:
        name, _, path = hold.partition(":")
        if name == point and path:
            end = time.monotonic() + 120
            while not os.path.exists(path) and time.monotonic() < end:
                time.sleep(0.05)
    want = os.environ.get(ENV)
    if not want:
        return
    name, _, n = want.partition(":")
    if name not in POINTS or not (n == "" or (n.isdigit() and int(n) >= 1)):
        raise RuntimeError(f"{ENV}={want!r}: expected POINT or POINT:N (N >= 1) with POINT one of {sorted(POINTS)}")
    if name != point:
        return
    _hits[point] = hit = _hits.get(point, 0) + 1
    if hit == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)
