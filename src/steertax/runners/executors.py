"""Executors: where a run's evaluation cells are computed.

``local`` (the default) evaluates every cell in this process, as :func:`steertax.runners.sweep.run_sweep` and
:func:`steertax.interventions.evaluate_intervention` always did. ``ray`` spreads the same cells over Ray
actors, each of which loads the model once (with a GPU where the cluster has them): a study's cell is one
task chunk at every strength, an align/merge cell is one setting (all of its task chunks). Workers compute;
the driver alone writes the store, one transaction per task chunk, exactly as the local path does, so
resume and the no-duplicate guarantee hold unchanged. A worker that dies has its work retried on a new
actor. Both executors compute a chunk with :func:`steertax.runners.sweep.eval_cell`, so their rows are equal.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from steertax import timing
from steertax.errors import ConfigError
from steertax.executor_config import ExecutorConfig, check_executor
from steertax.interventions.steering.vectors import now_iso
from steertax.models import load_model
from steertax.runners.sweep import TaskSpec, cell_plan, eval_cell
from steertax.tasks import get as get_task

if TYPE_CHECKING:
    from steertax.runners.sweep import TaskSpec

__all__ = ["ExecutorConfig", "Work", "plan_work", "run_work", "RayExecutor", "make_executor", "check_executor"]

log = logging.getLogger(__name__)


@dataclass
class Work:
    """One piece of work for a worker: task chunks (spec name, cell key, chunk index) under one intervention."""

    key: str  # the store's run id its rows go to
    iv: Any  # an Intervention (pickled to the worker)
    cells: list[tuple[str, str, int]]
    method: str = "steering"
    setting: Optional[str] = None
    backend: str = "hf"
    attempts: int = 0


def plan_work(
    iv: Any,
    key: str,
    specs: Sequence[TaskSpec],
    store: Any,
    *,
    seed: int,
    chunk: int,
    method: str,
    setting: Optional[str],
    per_chunk: bool,
    backend: str = "hf",
) -> list[Work]:
    """The work left for ``iv``: the chunks not yet stored under ``key``, one Work per chunk (a study's
    strength grid) or all of them in one (an adapter or merge, applied once per worker)."""

    todo: list[tuple[str, str, int]] = []
    for spec in specs:
        done = store.done_cells(key, spec.name)
        todo += [(spec.name, k, i) for i, (k, _) in enumerate(cell_plan(spec, seed, chunk)) if k not in done]
    if not todo:
        return []
    groups = [[c] for c in todo] if per_chunk else [todo]
    return [Work(key, iv, g, method, setting, backend) for g in groups]


def run_work(model: Any, tokenizer: Any, specs: dict[str, TaskSpec], work: Work, *, seed: int, chunk: int, batch_size: int) -> list[Any]:
    """Compute one Work: [(spec name, cell key, records)] in its order."""

    out = []
    with work.iv.apply(model) as a:
        check_backend(a, work.backend, work.iv)
        for name, ck, idx in work.cells:
            spec = specs[name]
            items = spec.task.items(spec.limit, seed)[idx * chunk : (idx + 1) * chunk]
            recs = eval_cell(
                a.model,
                a.prompt_tokenizer(tokenizer),
                spec,
                items,
                a.vector,
                a.strengths,
                seed=seed,
                batch_size=batch_size,
                reference=a.reference,
                condition=a.condition,
                backend=work.backend,
            )
            out.append((name, ck, recs))
    return out


def check_backend(applied: Any, backend: str, iv: Any) -> None:
    """A backend that reloads the checkpoint (vLLM) cannot see weights changed in place: refused in one line."""
    if applied.weights_modified and backend != "hf":
        raise ConfigError(f"backend {backend!r} reloads the checkpoint and cannot run {iv.method} {iv.name()!r}: use backend: hf")


def _spec_desc(specs: Sequence[TaskSpec]) -> list[tuple[str, dict[str, Any], Optional[int], Optional[str]]]:
    return [(s.task.name, dict(s.task.options), s.limit, s.key) for s in specs]


class _Worker:
    """A Ray actor: the model loaded once, then Work after Work."""

    def __init__(
        self,
        model: str,
        dtype: Optional[str],
        device: Optional[str],
        specs: list[Any],
        seed: int,
        chunk: int,
        batch_size: int,
        threads: int,
    ) -> None:

        torch.set_num_threads(max(1, threads))
        self.model, self.tok = load_model(model, dtype, device)
        self.specs = {}
        for name, opts, limit, key in specs:
            ts = TaskSpec(get_task(name, **opts), limit, key)
            self.specs[ts.name] = ts
        self.seed, self.chunk, self.batch_size = seed, chunk, batch_size

    def pid(self) -> int:
        return os.getpid()

    def run(self, work: Work) -> tuple[list[Any], dict[str, tuple[float, int]]]:
        before = timing.snapshot()
        out = run_work(self.model, self.tok, self.specs, work, seed=self.seed, chunk=self.chunk, batch_size=self.batch_size)
        return out, timing.since(before)


def _cause(e: Exception) -> str:
    c = getattr(e, "cause", None) or e
    return f"{type(c).__name__}: {str(c).strip().splitlines()[-1] if str(c).strip() else ''}"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor 'ray' needs Ray: `make install` installs it (or pip install 'steertax[ray]')") from None
    return ray


class RayExecutor:
    """Spread Work over Ray actors; write every finished chunk to ``store`` on the driver."""

    def __init__(
        self,
        cfg: ExecutorConfig,
        *,
        model: str,
        dtype: Optional[str],
        device: Optional[str],
        specs: Sequence[TaskSpec],
        seed: int,
        chunk: int,
        batch_size: int,
        store: Any,
        progress: bool = True,
        on_write: Optional[Callable[["RayExecutor", str, str], None]] = None,
    ) -> None:
        ray = _import_ray()
        self.ray, self.cfg, self.store, self.progress, self.on_write = ray, cfg, store, progress, on_write
        self.bar: Any = None
        self.actors: list[Any] = []
        self._owns = not ray.is_initialized()
        if self._owns:
            kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            if cfg.address:
                ray.init(address=cfg.address, **kw)
            else:
                ray.init(num_cpus=os.cpu_count() or 1, **kw)
        res = ray.cluster_resources()
        gpus = cfg.num_gpus if cfg.num_gpus is not None else (1.0 if res.get("GPU", 0) >= 1 else 0.0)
        if cfg.num_workers is not None:
            n = cfg.num_workers
        elif gpus > 0:
            n = max(1, int(res.get("GPU", 1) // gpus))
        else:
            n = max(1, int(res.get("CPU", 1) // cfg.num_cpus))
        self._actor_cls = ray.remote(num_cpus=cfg.num_cpus, num_gpus=gpus, max_restarts=0)(_Worker)
        self._args = (model, dtype, device, _spec_desc(specs), seed, chunk, batch_size, int(cfg.num_cpus))
        self.actors = [self._actor_cls.remote(*self._args) for _ in range(n)]
        try:  # every worker has loaded the model (a worker that cannot is reported here, in one line)
            self.pids = dict(zip(self.actors, ray.get([a.pid.remote() for a in self.actors]), strict=True))
        except ray.exceptions.RayError as e:
            self.close()
            raise ConfigError(f"a ray worker could not start: {_cause(e)}") from None
        self.idle: deque[Any] = deque(self.actors)
        self.queue: deque[Work] = deque()
        self.pending: dict[Any, tuple[Any, Work]] = {}
        self.written = 0
        self.retried = 0
        log.info("ray executor: %d workers (%g CPU, %g GPU each)", n, cfg.num_cpus, gpus)

    # -- scheduling
    def submit(self, works: Sequence[Work]) -> None:
        for w in works:
            self.store.begin_run(w.key, {"intervention": w.method, "setting": w.setting}, "")
        self.queue.extend(works)
        n = sum(len(w.cells) for w in works)
        if n:
            if self.bar is None:
                self.bar = tqdm(total=0, desc="cells (ray)", unit="cell", disable=not self.progress)
            self.bar.total += n
            self.bar.refresh()
        self._dispatch()
        self.poll(0)

    def _dispatch(self) -> None:
        while self.idle and self.queue:
            actor, w = self.idle.popleft(), self.queue.popleft()
            self.pending[actor.run.remote(w)] = (actor, w)

    def poll(self, timeout: Optional[float]) -> None:
        """Collect finished work (waiting up to ``timeout`` s for one; None: until one finishes)."""
        if not self.pending:
            return
        ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        for ref in ready:
            actor, w = self.pending.pop(ref)
            try:
                out, split = self.ray.get(ref)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError) as e:
                self._lost(actor, w, e)
                continue
            except self.ray.exceptions.RayTaskError as e:  # the work itself failed: the same error as the local path
                raise e.as_instanceof_cause() from None

            timing.merge(split)
            for name, ck, recs in out:
                self.store.write_cell(w.key, name, ck, recs, now_iso(), method=w.method, setting=w.setting)
                self.written += 1
                if self.bar is not None:
                    self.bar.update(1)
                if self.on_write is not None:
                    self.on_write(self, w.key, ck)
            self.idle.append(actor)
        self._dispatch()

    def _lost(self, actor: Any, w: Work, err: Exception) -> None:
        """A worker died: replace it and retry its work elsewhere (up to max_retries times)."""
        w.attempts += 1
        if w.attempts > self.cfg.max_retries:
            raise RuntimeError(f"a ray worker died {w.attempts} times on the same work ({w.key}); last error: {err}") from err
        self.retried += 1
        log.warning("ray worker lost (%s); retrying its %d cell(s) on another worker", type(err).__name__, len(w.cells))
        self.actors = [a for a in self.actors if a is not actor]
        new = self._actor_cls.remote(*self._args)
        self.actors.append(new)
        self.idle.append(new)
        self.queue.appendleft(w)

    def drain(self) -> None:
        while self.pending or self.queue:
            self._dispatch()
            self.poll(None)

    def worker_pids(self) -> list[int]:
        """The worker processes' ids (for monitoring, and for the tests that kill one)."""
        for a in self.actors:
            if a not in self.pids:
                self.pids[a] = self.ray.get(a.pid.remote())
        return [self.pids[a] for a in self.actors]

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - an actor already gone
                pass
        if self._owns:
            self.ray.shutdown()

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_executor(cfg: ExecutorConfig, *, model_cfg: Any, specs: Sequence[TaskSpec], store: Any, progress: bool) -> Optional[RayExecutor]:
    """A RayExecutor for ``cfg.kind == "ray"``; None for the local executor (the caller evaluates in-process)."""
    check_executor(cfg)
    if cfg.kind == "local":
        return None
    return RayExecutor(
        cfg,
        model=model_cfg.model,
        dtype=getattr(model_cfg, "dtype", None),
        device=getattr(model_cfg, "device", None),
        specs=specs,
        seed=model_cfg.seed,
        chunk=model_cfg.chunk,
        batch_size=model_cfg.batch_size,
        store=store,
        progress=progress,
    )
