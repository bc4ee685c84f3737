"""Interventions: every way of aligning a model, as one concept.

An intervention turns the base model into the model to measure, inside a ``with`` block: a steering
vector at strength r (method ``steering``, setting r_e), a LoRA adapter trained by ``steertax align``
(method ``dpo``/``dpo_reg``/``sft``/``selective``, setting its label), or nothing (method ``base``).
:func:`evaluate_intervention` runs the study's task cells under it into the shared results store, one
run id per (method, setting), so every method is fitted, tabulated and compared the same way.

Steering keeps its own batched path (many strengths per forward pass, :func:`steertax.sweep.run_sweep`
with a strength grid); an adapter is one setting per evaluation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import ModelError

__all__ = ["Intervention", "BaseIntervention", "AdapterIntervention", "SteeringIntervention", "evaluate_intervention", "run_key"]


class Intervention:
    method: str = ""
    setting: str = ""

    def reference(self) -> Any:
        """Inside :meth:`apply`: a context manager under which the yielded model is the base model
        again, for tasks that compare with it (drift's KL); None when the model is not modified."""
        return None

    @contextlib.contextmanager
    def apply(self, model: Any) -> Iterator[tuple[Any, Any, list[float]]]:
        """Yields (model to evaluate, steering vector or None, strengths)."""
        raise NotImplementedError
        yield  # pragma: no cover


@dataclass
class BaseIntervention(Intervention):
    """The unmodified model: every method's reference point."""

    method: str = "base"
    setting: str = "base"

    @contextlib.contextmanager
    def apply(self, model: Any) -> Iterator[tuple[Any, Any, list[float]]]:
        yield model, None, [0.0]


@dataclass
class SteeringIntervention(Intervention):
    """A steering vector over a grid of strengths (one batched evaluation, one row per strength)."""

    vector: Any = None
    strengths: Sequence[float] = (0.0,)
    method: str = "steering"
    setting: str = ""

    @contextlib.contextmanager
    def apply(self, model: Any) -> Iterator[tuple[Any, Any, list[float]]]:
        yield model, self.vector, [float(s) for s in self.strengths]


@dataclass
class AdapterIntervention(Intervention):
    """A peft (LoRA) adapter on the base model. Its layers are injected into the model's own modules for
    the evaluation and removed afterwards, so the base model object is unchanged when the block ends."""

    path: Path = Path()
    method: str = "adapter"
    setting: str = ""

    @contextlib.contextmanager
    def apply(self, model: Any) -> Iterator[tuple[Any, Any, list[float]]]:
        from peft import PeftModel

        from ._util import quiet_renamed_checkpointing

        check_adapter(self.path, model)
        with quiet_renamed_checkpointing():
            pm = PeftModel.from_pretrained(model, str(self.path), is_trainable=False)
        pm.eval()
        self._peft: Any = pm
        try:
            yield model, None, [0.0]  # the injected LoRA layers run inside the model's own forward
        finally:
            self._peft = None
            pm.unload()

    def reference(self) -> Any:
        pm = getattr(self, "_peft", None)
        return None if pm is None else pm.disable_adapter


def check_adapter(path: Path, model: Any) -> None:
    """An adapter trained for another base model is refused in one line, before peft loads it."""
    import json

    cfg_path = Path(path) / "adapter_config.json"
    if not cfg_path.is_file():
        raise ModelError(f"{path} is not a peft adapter (no adapter_config.json): give the folder `steertax align` saved")
    meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = meta.get("target_modules") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    missing = [t for t in targets if t not in names]
    if missing:
        raise ModelError(f"adapter {path} targets modules {missing} that this model does not have: it was trained for another base model")
    st_path = Path(path) / "adapter_model.safetensors"
    if st_path.is_file():
        from safetensors import safe_open

        shapes = dict(model.named_parameters())
        with safe_open(str(st_path), "pt") as f:
            for k in f.keys():
                if ".lora_A." not in k:
                    continue
                base = k.split("base_model.model.", 1)[-1].replace(".lora_A.weight", ".weight")
                p = shapes.get(base)
                if p is None or f.get_slice(k).get_shape()[1] != p.shape[1]:
                    raise ModelError(f"adapter {path} does not fit this model ({base}): it was trained for another base model")


def run_key(run_id: str, iv: Intervention) -> str:
    """The store's run id of one intervention's rows."""
    return f"{run_id}|{iv.method}|{iv.setting}"


def evaluate_intervention(
    iv: Intervention,
    model: Any,
    tokenizer: Any,
    specs: Sequence[Any],
    store: Any,
    run_id: str,
    cfg: Any,
    *,
    progress: bool = True,
    executor: Any = None,
) -> None:
    """Every task cell of ``specs`` not yet stored for ``iv``, evaluated under it and committed cell by cell.
    With an ``executor`` (a :class:`~steertax.executors.RayExecutor`) the setting is queued as one piece of
    work for a worker and this returns at once; ``executor.drain()`` waits for it."""
    from .sweep import run_sweep

    key = run_key(run_id, iv)
    if executor is not None:
        from .executors import plan_work

        setting = None if iv.method == "steering" else iv.setting
        executor.submit(
            plan_work(iv, key, specs, store, seed=cfg.seed, chunk=cfg.chunk, method=iv.method, setting=setting, per_chunk=False)
        )
        return
    items = {s.name: s.task.items(s.limit, cfg.seed) for s in specs}
    n_cells = {n: (len(v) + cfg.chunk - 1) // cfg.chunk for n, v in items.items()}
    if all(len(store.done_cells(key, n)) >= c for n, c in n_cells.items()):
        return
    store.begin_run(key, {"intervention": iv.method, "setting": iv.setting}, "")
    with iv.apply(model) as (m, vec, strengths):
        run_sweep(
            m,
            tokenizer,
            vec,
            specs,
            strengths,
            store,
            key,
            seed=cfg.seed,
            chunk=cfg.chunk,
            batch_size=cfg.batch_size,
            progress=progress,
            method=iv.method,
            setting=None if iv.method == "steering" else iv.setting,
            reference=iv.reference(),
        )
