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

from steertax._faults import checkpoint
from steertax.interventions import Intervention, store_key
from steertax.interventions.steering.vectors import now_iso
from steertax.models import load_model
from steertax.runners.executors import check_backend, make_executor, plan_work
from steertax.runners.sweep import TaskSpec, run_sweep
from steertax.store import ResultStore
from steertax.tasks import get as get_task

__all__ = ["Session", "session", "task_specs", "clear_stale", "evaluate_intervention"]


def task_specs(cfg: Any) -> list[TaskSpec]:
    """The config's tasks, built from the registry (their options validated)."""
    growable = bool(getattr(cfg, "growable_cells", False))
    return [TaskSpec(get_task(t.name, **t.options), t.limit, t.label, growable) for t in cfg.tasks]


def clear_stale(out: Path, patterns: Sequence[str]) -> None:
    """Remove what a killed run's unfinished atomic writes left (never valid): files or folders matching
    ``patterns`` (globs relative to ``out``)."""
    for pat in patterns:
        for stale in out.glob(pat):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def evaluate_intervention(
    iv: Intervention,
    model: Any,
    tokenizer: Any,
    specs: Sequence[TaskSpec],
    store: Any,
    scope: str,
    cfg: Any,
    *,
    progress: bool = True,
    executor: Any = None,
) -> str:
    """Every task cell of ``specs`` not yet stored for ``iv``, evaluated under it and committed cell by cell;
    returns its store key. With an ``executor`` (a :class:`~steertax.runners.executors.RayExecutor`) the work is
    queued (one piece per chunk for a strength grid, one for a weight intervention) and this returns at
    once; ``executor.drain()`` waits for it."""
    key = store_key(scope, iv)
    grid = iv.batched
    setting = None if grid else iv.name()  # a grid's rows carry their own setting (the strength)
    backend = getattr(cfg, "backend", "hf")
    if executor is not None:
        executor.submit(
            plan_work(
                iv, key, specs, store, seed=cfg.seed, chunk=cfg.chunk, method=iv.method, setting=setting, per_chunk=grid, backend=backend
            )
        )
        return key
    items = {s.name: s.task.items(s.limit, cfg.seed) for s in specs}
    n_cells = {n: (len(v) + cfg.chunk - 1) // cfg.chunk for n, v in items.items()}
    if all(len(store.done_cells(key, n)) >= c for n, c in n_cells.items()):
        return key
    store.begin_run(key, {"intervention": iv.method, "setting": iv.name(), "describe": iv.describe()}, "")
    with iv.apply(model) as a:
        check_backend(a, backend, iv)
        run_sweep(
            a.model,
            a.prompt_tokenizer(tokenizer),
            a.vector,
            specs,
            a.strengths,
            store,
            key,
            seed=cfg.seed,
            chunk=cfg.chunk,
            batch_size=cfg.batch_size,
            progress=progress,
            method=iv.method,
            setting=setting,
            reference=a.reference,
            condition=a.condition,
            backend=backend,
        )
    return key


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
