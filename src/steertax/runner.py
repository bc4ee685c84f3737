"""The one runner skeleton of ``steertax run``, ``steertax align`` and ``steertax merge``.

Each command checks all of its inputs first (before anything is written or a model loads), then opens a
:func:`session`: the output folder (stale temporary files of a killed run removed), the task specs, the
model, the results store with the run's scope, and the executor (local, or Ray workers). Inside it the
command builds its interventions (a steering vector, trained adapters, merged weights) and hands each to
:meth:`Session.evaluate`, which stores its rows under :func:`steertax.interventions.store_key`. Leaving the
session waits for queued work and closes the store; then the command summarizes.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from ._faults import checkpoint
from .executors import make_executor
from .interventions import Intervention, evaluate_intervention
from .models import load_model
from .store import ResultStore
from .sweep import TaskSpec
from .tasks import get as get_task
from .vectors import now_iso

__all__ = ["Session", "session", "task_specs", "clear_stale"]


def task_specs(cfg: Any) -> list[TaskSpec]:
    """The config's tasks, built from the registry (their options validated)."""
    return [TaskSpec(get_task(t.name, **t.options), t.limit, t.label) for t in cfg.tasks]


def clear_stale(out: Path, patterns: Sequence[str]) -> None:
    """Remove what a killed run's unfinished atomic writes left (never valid): files or folders matching
    ``patterns`` (globs relative to ``out``)."""
    for pat in patterns:
        for stale in out.glob(pat):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


@dataclass
class Session:
    """An open run: its config, output folder, model, tokenizer, task specs, store, scope and executor."""

    cfg: Any
    out: Path
    model: Any
    tokenizer: Any
    specs: list[TaskSpec]
    store: ResultStore
    scope: str
    executor: Any
    progress: bool = True

    def evaluate(self, iv: Intervention) -> str:
        """Every cell of ``iv`` not yet stored, evaluated (or queued on the executor); returns its store key."""
        return evaluate_intervention(
            iv, self.model, self.tokenizer, self.specs, self.store, self.scope, self.cfg, progress=self.progress, executor=self.executor
        )


@contextlib.contextmanager
def session(
    cfg: Any,
    out: str | Path,
    scope: str,
    *,
    stale: Sequence[str] = (),
    progress: bool = True,
    prepare: Optional[Callable[[Any, Any], None]] = None,
) -> Iterator[Session]:
    """Open a run (see the module docstring); the caller has checked its inputs. ``prepare(model, tokenizer)``
    runs after the model loads and before the store opens (a study extracts its vector and writes its resolved
    config there, so a run killed before its sweep leaves no store)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clear_stale(out, stale)
    specs = task_specs(cfg)
    checkpoint("start")  # test-only fault injection (steertax._faults)
    model, tok = load_model(cfg.model, cfg.dtype, getattr(cfg, "device", None))
    if prepare is not None:
        prepare(model, tok)
    with ResultStore(out / "results.sqlite") as store:
        store.begin_run(scope, cfg.to_dict(), now_iso())
        ex = make_executor(cfg.executor, model_cfg=cfg, specs=specs, store=store, progress=progress)
        with ex if ex is not None else contextlib.nullcontext():
            yield Session(cfg, out, model, tok, specs, store, scope, ex, progress)
            if ex is not None:
                ex.drain()
