"""Task vectors and merged weights as an intervention.

A specialist's task vector per weight matrix is τ = θ_specialist − θ_base (for a peft LoRA adapter, exactly
its merged delta ``scale · B @ A``; for a full model of the base's architecture, its weights minus the
base's). :func:`merge_deltas` merges the specialists' task vectors matrix by matrix with a registered merge
method (:mod:`steertax.interventions.merge`), and :class:`MergedIntervention` applies θ_base + λ · merge to
the base model inside a ``with`` block, restoring the touched weights exactly when it ends.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch
from safetensors.torch import load_file

from steertax.errors import DataError, ModelError
from steertax.interventions.core import Applied, Intervention, register_intervention, tensors_hash
from steertax.interventions.merge.registry import MERGE_REGISTRY, MergeParams, merge_methods

__all__ = ["adapter_deltas", "model_deltas", "merge_deltas", "MergedIntervention", "deltas_hash"]


# --------------------------------------------------------------------------- task vectors


def adapter_deltas(path: str | Path, model: Any | None = None) -> dict[str, torch.Tensor]:
    """A peft LoRA adapter's weight deltas, by the base model's weight name: ``scale · B @ A`` (float32)."""

    path = Path(path)
    cfg_path, st_path = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not cfg_path.is_file() or not st_path.is_file():
        raise DataError(f"{path} is not a peft adapter folder (needs adapter_config.json and adapter_model.safetensors)")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    r, alpha = int(cfg.get("r", 8)), float(cfg.get("lora_alpha", 8))
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    t = load_file(str(st_path))
    out: dict[str, torch.Tensor] = {}
    for k, a in t.items():
        if ".lora_A." not in k:
            continue
        b = t.get(k.replace(".lora_A.", ".lora_B."))
        if b is None:
            raise DataError(f"{path}: {k} has no matching lora_B weight: the adapter file is incomplete")
        name = k.split("base_model.model.", 1)[-1].replace(".lora_A.weight", ".weight")
        out[name] = scale * (b.float() @ a.float())
    if not out:
        raise DataError(f"{path} holds no LoRA weights")
    if model is not None:
        _check_fits(out, model, str(path))
    return out


def model_deltas(specialist: Any, base: Any, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """A full specialist model's deltas from the base, for its 2-D weights (or ``names``)."""
    bp, sp = dict(base.named_parameters()), dict(specialist.named_parameters())
    keys = list(names) if names is not None else [k for k, p in bp.items() if p.ndim == 2]
    out = {}
    for k in keys:
        if k not in sp:
            raise ModelError(f"the specialist has no weight {k}: it is not the base model's architecture")
        if sp[k].shape != bp[k].shape:
            raise ModelError(
                f"the specialist's {k} has shape {tuple(sp[k].shape)}, the base's {tuple(bp[k].shape)}: not the same architecture"
            )
        out[k] = sp[k].detach().float() - bp[k].detach().float()
    return out


def _check_fits(deltas: Mapping[str, torch.Tensor], model: Any, what: str) -> None:
    params = dict(model.named_parameters())
    for k, d in deltas.items():
        p = params.get(k)
        if p is None:
            raise ModelError(f"{what} changes {k}, which this model does not have: it was made for another base model")
        if tuple(p.shape) != tuple(d.shape):
            raise ModelError(f"{what} changes {k} with shape {tuple(d.shape)}, but the model's is {tuple(p.shape)}: another base model")


# --------------------------------------------------------------------------- methods


def merge_deltas(
    task_deltas: Sequence[Mapping[str, torch.Tensor]],
    weights: Sequence[float],
    method: str,
    *,
    density: float = 0.5,
    combine: str = "linear",
    seed: int = 0,
    outlier_m: float = 5.0,
    energy: float = 0.9,
) -> dict[str, torch.Tensor]:
    """Merge the specialists' deltas matrix by matrix with the registered ``method`` (weights w_t; the merge
    ``scale`` is applied by :class:`MergedIntervention`). Matrices only some specialists change count as 0
    for the others."""
    if method not in MERGE_REGISTRY:
        raise DataError(f"merge method {method!r} is not one of {merge_methods()}")
    ws = [float(w) for w in weights]
    if len(ws) != len(task_deltas):
        raise DataError(f"{len(ws)} weights for {len(task_deltas)} specialists: give one weight per specialist")
    if any(not math.isfinite(w) for w in ws):
        raise DataError(f"merge weights {ws} contain NaN or inf: give finite numbers")
    if method in ("ties", "dare") and not 0 < density <= 1:
        raise DataError(f"density {density} must be in (0, 1]: the fraction of each task vector kept")
    if combine not in ("linear", "ties"):
        raise DataError(f"dare's combine must be linear or ties, got {combine!r}")
    spec = MergeParams(density=density, combine=combine, outlier_m=outlier_m, energy=energy)
    fn = MERGE_REGISTRY[method].fn
    names = sorted(set().union(*(d.keys() for d in task_deltas)))
    out: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):  # DARE's drops (peft draws them from torch's global generator), seeded
        torch.manual_seed(seed)
        for name in names:
            shape = next(d[name].shape for d in task_deltas if name in d)
            ds = [d[name].float() if name in d else torch.zeros(shape) for d in task_deltas]
            out[name] = fn(ds, ws, spec)
    return out


# --------------------------------------------------------------------------- the intervention


@register_intervention("merged", 1)
class MergedIntervention(Intervention):
    """θ_base + scale · merged delta inside a ``with`` block; the touched weights are restored exactly
    (copied back) when it ends. ``spec``: the resolved description of how the deltas were made (the merge
    method and its version, its parameters, the specialists' keys, the seed), which the key covers."""

    def __init__(
        self,
        deltas: Mapping[str, torch.Tensor],
        scale: float = 1.0,
        method: str = "merge",
        setting: str = "",
        spec: Optional[dict[str, Any]] = None,
    ) -> None:
        if not math.isfinite(float(scale)):
            raise DataError(f"merge scale {scale!r} is not finite")
        self.deltas, self.scale, self.method, self.setting = dict(deltas), float(scale), method, setting
        self.spec = dict(spec) if spec is not None else {"deltas": deltas_hash(self.deltas)}

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "scale": self.scale}

    def name(self) -> str:
        return self.setting or f"{self.method} λ={self.scale:g}"

    @contextlib.contextmanager
    def apply(self, model: Any) -> Iterator[Applied]:
        _check_fits(self.deltas, model, f"merge {self.setting!r}")
        params = dict(model.named_parameters())
        saved = {k: params[k].detach().to("cpu", copy=True) for k in self.deltas}  # exact copies, off the accelerator

        @contextlib.contextmanager
        def restore() -> Iterator[None]:  # the base model, for tasks that compare with it (drift)
            now = {k: params[k].detach().to("cpu", copy=True) for k in self.deltas}
            with torch.no_grad():
                for k in self.deltas:
                    params[k].copy_(saved[k])
            try:
                yield
            finally:
                with torch.no_grad():
                    for k in self.deltas:
                        params[k].copy_(now[k])

        with torch.no_grad():
            for k, d in self.deltas.items():
                p = params[k]
                p.copy_((p.double() + self.scale * d.to(p.device).double()).to(p.dtype))
        try:
            yield Applied(model, reference=restore, weights_modified=True)
        finally:
            with torch.no_grad():
                for k in self.deltas:
                    params[k].copy_(saved[k])


def deltas_hash(deltas: Mapping[str, torch.Tensor]) -> str:
    """A content hash of a delta set (for a MergedIntervention made without a spec)."""
    return tensors_hash(deltas)
