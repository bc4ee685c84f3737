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

from steertax._util import quiet_renamed_checkpointing
from steertax.errors import DataError, ModelError
from steertax.interventions.adapter import check_adapter, check_scales
from steertax.interventions.core import Applied, Intervention, register_intervention, tensors_hash
from steertax.interventions.knob import DeltaScale, check_deltas_fit
from steertax.interventions.merge.registry import build_merge_params, merge_method

__all__ = ["adapter_deltas", "model_deltas", "merge_deltas", "MergedIntervention", "deltas_hash"]


# --------------------------------------------------------------------------- task vectors


# adapter features whose weight delta peft's LoRA ``get_delta_weight`` does not give (their merge would be wrong)
_UNSUPPORTED = {
    "use_dora": "DoRA (its magnitude vector is not a weight delta)",
    "lora_bias": "a LoRA bias (get_delta_weight leaves the bias out)",
}


def adapter_deltas(path: str | Path, model: Any | None = None) -> dict[str, torch.Tensor]:
    """A peft LoRA adapter's weight deltas by the base model's parameter name (float32), computed by peft
    itself (``LoraLayer.get_delta_weight``: ``fan_in_fan_out``, ``rank_pattern``/``alpha_pattern`` and rsLoRA
    included) on ``model``, the base it was trained for. Adapter features whose delta that does not give
    (DoRA, LoRA bias, trained base biases, ``modules_to_save``) are refused in one line."""

    path = Path(path)
    cfg_path, st_path = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not cfg_path.is_file() or not st_path.is_file():
        raise DataError(f"{path} is not a peft adapter folder (needs adapter_config.json and adapter_model.safetensors)")
    if model is None:
        raise DataError(f"adapter_deltas({path}) needs the base model the adapter was trained for: pass model=")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    for k, what in _UNSUPPORTED.items():
        if cfg.get(k):
            raise DataError(f"{path} uses {what}: merging supports plain LoRA only; retrain without {k}")
    if cfg.get("bias", "none") != "none":
        raise DataError(f"{path} trains base biases (bias={cfg['bias']!r}): merging supports plain LoRA only; retrain with bias='none'")
    if cfg.get("modules_to_save"):
        raise DataError(f"{path} saves whole modules ({cfg['modules_to_save']}): merging supports plain LoRA only")
    if cfg.get("peft_type", "LORA") != "LORA":
        raise DataError(f"{path} is a {cfg.get('peft_type')} adapter: merging supports LoRA adapters only")
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    check_adapter(path, model)
    with quiet_renamed_checkpointing():
        pm = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    out: dict[str, torch.Tensor] = {}
    try:
        for name, m in pm.named_modules():
            if not isinstance(m, LoraLayer) or not ("default" in m.lora_A or "default" in getattr(m, "lora_embedding_A", {})):
                continue
            if "default" in getattr(m, "lora_variant", {}):
                raise DataError(f"{path}: layer {name} is a LoRA variant (DoRA or similar): merging supports plain LoRA only")
            with torch.no_grad():
                layer: Any = m  # every concrete LoRA layer type has get_delta_weight
                out[name.split("base_model.model.", 1)[-1] + ".weight"] = layer.get_delta_weight("default").detach().float().cpu().clone()
    finally:
        pm.unload()
    if not out:
        raise DataError(f"{path} holds no LoRA weights")
    check_deltas_fit(out, model, str(path))
    return out


def model_deltas(specialist: Any, base: Any, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """A full specialist model's deltas from the base: every parameter (weights, norms, biases, embeddings;
    a tied weight once), or ``names``; unchanged parameters are left out."""
    bp, sp = dict(base.named_parameters()), dict(specialist.named_parameters())
    keys = list(names) if names is not None else list(bp)
    out = {}
    for k in keys:
        if k not in sp:
            raise ModelError(f"the specialist has no weight {k}: it is not the base model's architecture")
        if sp[k].shape != bp[k].shape:
            raise ModelError(
                f"the specialist's {k} has shape {tuple(sp[k].shape)}, the base's {tuple(bp[k].shape)}: not the same architecture"
            )
        d = sp[k].detach().float() - bp[k].detach().float()
        if names is not None or bool(d.any()):
            out[k] = d
    extra = sorted(set(sp) - set(bp))
    if extra and names is None:
        raise ModelError(f"the specialist has weights the base has not ({extra[:3]}): it is not the base model's architecture")
    return out


# --------------------------------------------------------------------------- methods


def merge_deltas(
    task_deltas: Sequence[Mapping[str, torch.Tensor]],
    weights: Sequence[float],
    method: str,
    *,
    seed: int = 0,
    params: Any = None,
    **param_kwargs: Any,
) -> dict[str, torch.Tensor]:
    """Merge the specialists' deltas matrix by matrix with the registered ``method`` (weights w_t; the merge
    ``scale`` is applied by :class:`MergedIntervention`). Its parameters: ``params``, an instance of the
    method's parameter dataclass, or keyword arguments checked against its declaration
    (``merge_deltas(ds, ws, "ties", density=0.5)``); neither: its defaults. ``seed`` seeds torch's generator
    (DARE's drops). Matrices only some specialists change count as 0 for the others."""
    m = merge_method(method, "merge method", DataError)
    if params is None:
        params = build_merge_params(m, param_kwargs, method, DataError)
    elif param_kwargs:
        raise DataError(f"merge_deltas: give {method}'s parameters as params= or as keywords ({', '.join(param_kwargs)}), not both")
    elif msg := m.problem(params):
        raise DataError(f"{method}: {msg}")
    ws = [float(w) for w in weights]
    if len(ws) != len(task_deltas):
        raise DataError(f"{len(ws)} weights for {len(task_deltas)} specialists: give one weight per specialist")
    if any(not math.isfinite(w) for w in ws):
        raise DataError(f"merge weights {ws} contain NaN or inf: give finite numbers")
    names = sorted(set().union(*(d.keys() for d in task_deltas)))
    out: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):  # DARE's drops (peft draws them from torch's global generator), seeded
        torch.manual_seed(seed)
        for name in names:
            shape = next(d[name].shape for d in task_deltas if name in d)
            ds = [d[name].float() if name in d else torch.zeros(shape) for d in task_deltas]
            out[name] = m.fn(ds, ws, params)
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
        scales: Sequence[float] = (),
    ) -> None:
        if not math.isfinite(float(scale)):
            raise DataError(f"merge scale {scale!r} is not finite")
        self.deltas, self.scale, self.method, self.setting = dict(deltas), float(scale), method, setting
        self.spec = dict(spec) if spec is not None else {"deltas": deltas_hash(self.deltas)}
        try:
            self.scales = check_scales(scales)
        except ModelError as e:
            raise DataError(str(e)) from None

    @property
    def batched(self) -> bool:
        return bool(self.scales)

    def describe(self) -> dict[str, Any]:
        if self.scales:  # the knob λ is the rows' strength column: one key for the grid
            return {"spec": self.spec, "scales": list(self.scales)}
        return {"spec": self.spec, "scale": self.scale}

    def name(self) -> str:
        if self.scales:
            return self.setting or f"{self.method} (λ)"
        return self.setting or f"{self.method} λ={self.scale:g}"

    @contextlib.contextmanager
    def apply(self, model: Any) -> Iterator[Applied]:
        check_deltas_fit(self.deltas, model, f"merge {self.setting!r}")
        if self.scales:  # every scale in one pass: row b runs θ_base + λ_b·Δ through hooks; the weights stay
            yield Applied(model, DeltaScale(model, self.deltas), list(self.scales), weights_modified=True)
            return
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
