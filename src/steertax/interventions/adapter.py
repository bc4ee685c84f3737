"""A peft (LoRA) adapter as an intervention: its layers are injected into the base model's own modules
for the evaluation and removed afterwards, so the base model object is unchanged when the block ends.

The key covers the adapter's files (config and weights, by content hash) and ``spec``, the resolved
description of how it was made (method, setting, training data hash, LoRA and training settings, model,
dtype, the trainer's version) that ``steertax align`` and ``steertax merge`` pass.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from safetensors import safe_open

from steertax._util import quiet_renamed_checkpointing, sha256_file
from steertax.errors import ModelError
from steertax.interventions.core import Applied, Intervention, description_hash, register_intervention
from steertax.interventions.knob import LoraScale

__all__ = ["AdapterIntervention", "check_scales", "adapter_ready", "lora_targets_in", "check_adapter", "adapter_files_hash"]


def lora_targets_in(module_names: Any, targets: Any) -> list[str]:
    """The LoRA ``targets`` that name some module of a model (full dotted ``module_names``): the trainer
    adapts these, and a preflight refuses a config where none matches."""
    names = list(module_names)
    return [t for t in targets if any(n.endswith(t) for n in names)]


def adapter_ready(path: Path) -> bool:
    """A finished adapter folder of ``steertax align``/``merge`` (written atomically: config and setting.json)."""
    return (path / "adapter_config.json").is_file() and (path / "setting.json").is_file()


def _canonical(x: Any) -> Any:
    """JSON with every list sorted (peft writes ``target_modules`` in set order, which varies by process)."""
    if isinstance(x, dict):
        return {k: _canonical(v) for k, v in x.items()}
    if isinstance(x, list):
        return sorted((_canonical(v) for v in x), key=lambda v: json.dumps(v, sort_keys=True))
    return x


def adapter_files_hash(path: Path) -> str:
    """The content hash of an adapter folder: its config (canonical: key and list order do not count) and
    its weights' bytes."""
    cfg_path = path / "adapter_config.json"
    cfg = _canonical(json.loads(cfg_path.read_text(encoding="utf-8"))) if cfg_path.is_file() else None
    weights = [sha256_file(p)[:16] for p in (path / "adapter_model.safetensors", path / "adapter_model.bin") if p.is_file()]
    return description_hash({"config": cfg, "weights": weights})


@register_intervention("adapter", 1)
@dataclass
class AdapterIntervention(Intervention):
    """A peft (LoRA) adapter on the base model (``method``: dpo, dpo_reg, sft, selective, specialist, mixture ...)."""

    path: Path = Path()
    method: str = "adapter"
    label: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    scales: tuple[float, ...] = ()  # the knob α: θ_base + α·Δθ per row, one batched evaluation (empty: α = 1 only)

    def __post_init__(self) -> None:
        self.scales = check_scales(self.scales)

    @property
    def batched(self) -> bool:
        return bool(self.scales)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"adapter": adapter_files_hash(Path(self.path)), "spec": self.spec}
        if self.scales:  # the rows are α values, not the adapter at α = 1: another key
            d["alpha"] = list(self.scales)
        return d

    def name(self) -> str:
        n = self.label or Path(self.path).name
        return f"{n} (α)" if self.scales else n

    @contextlib.contextmanager
    def apply(self, model: Any) -> Iterator[Applied]:
        from peft import PeftModel

        check_adapter(self.path, model)
        with quiet_renamed_checkpointing():
            pm = PeftModel.from_pretrained(model, str(self.path), is_trainable=False)
        pm.eval()
        try:  # the injected LoRA layers run inside the model's own forward
            if self.scales:
                knob = LoraScale(pm)
                knob.set_enabled(False)  # the base model outside the knob's rows
                yield Applied(model, knob, list(self.scales), weights_modified=True)
            else:
                yield Applied(model, reference=pm.disable_adapter, weights_modified=True)
        finally:
            pm.unload()


def check_scales(scales: Any) -> tuple[float, ...]:
    """A knob's α grid: finite numbers, none repeated (α = 0 is the base, α > 1 extrapolates)."""
    try:
        out = tuple(float(a) for a in (scales or ()))
    except (TypeError, ValueError):
        raise ModelError(f"scales {scales!r} must be a list of numbers, e.g. [0.25, 0.5, 0.75, 1]") from None
    if any(not math.isfinite(a) for a in out):
        raise ModelError(f"scales {list(out)} contain NaN or inf: give finite numbers")
    if len(set(out)) != len(out):
        raise ModelError(f"scales {list(out)} repeat a value: give each α once")
    return out


def check_adapter(path: Path, model: Any) -> None:
    """An adapter trained for another base model is refused in one line, before peft loads it."""
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
        shapes = dict(model.named_parameters())
        with safe_open(str(st_path), "pt") as f:
            for k in f.keys():
                if ".lora_A." not in k:
                    continue
                base = k.split("base_model.model.", 1)[-1].replace(".lora_A.weight", ".weight")
                p = shapes.get(base)
                fan_in = p.shape[0 if meta.get("fan_in_fan_out") else -1] if p is not None and p.ndim == 2 else None
                if p is None or f.get_slice(k).get_shape()[1] != fan_in:
                    raise ModelError(f"adapter {path} does not fit this model ({base}): it was trained for another base model")
