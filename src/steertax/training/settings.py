"""What one fine-tuning run is made of: the LoRA and optimizer settings, the data settings, and a setting
(:class:`AlignSetting`: a registered method with its own parameters, plus the fields every method shares)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from steertax.errors import ConfigError
from steertax.training.registry import TRAINED_METHODS, build_params, method, params_dict

__all__ = ["LoraSettings", "TrainSettings", "DataSettings", "AlignSetting", "COMMON_FIELDS", "PRECISIONS", "resolved_precision"]


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class TrainSettings:
    steps: int = 12
    lr: float = 5e-4
    batch_size: int = 8
    max_length: int = 128
    warmup_steps: int = 5
    # bf16 mixed precision (trl's default) or fp32; auto: bf16 where the device computes it natively (a CUDA GPU with
    # bf16, a CPU with AVX512-BF16/AMX), else fp32 (on an AVX2 CPU, bf16 matmuls fall back to a scalar kernel: ~20x slower)
    precision: str = "auto"


def resolved_precision(precision: str) -> str:
    """``bf16`` or ``fp32``: ``auto`` resolved for this machine (see :class:`TrainSettings`)."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return "bf16" if native else "fp32"


@dataclass
class DataSettings:
    pairs: str = "refusal"  # the bundled refusal preferences, or a .jsonl with prompt/chosen/rejected
    n_pairs: int = 160
    n_preserve: int = 48  # selective: benign prompts answered by the base model
    preserve_tokens: int = 128  # room for a whole answer: answers cut here are dropped (counted)


# the fields every setting has, whatever its method
COMMON_FIELDS = ("method", "lr_factor", "steps", "label", "alphas")


@dataclass
class AlignSetting:
    """One point of an align sweep: a registered ``method`` with its ``params`` (the method's own parameter
    dataclass; None: its defaults; a dict: checked and built), and the fields every method shares:
    ``lr_factor`` (× train.lr), ``steps`` (None: train.steps), ``label`` (the name in the store and reports;
    default: the method and its parameters) and ``alphas`` (this setting's α grid, None: the config's; evaluation
    only, not in the training key). ``AlignSetting.of("dpo", beta=0.1)`` takes the flat form YAML uses."""

    method: str = "dpo"
    params: Any = None
    lr_factor: float = 1.0
    steps: Optional[int] = None
    label: Optional[str] = None
    alphas: Optional[list[float]] = None

    def __post_init__(self) -> None:
        m = method(self.method)
        if self.params is None:
            self.params = m.params()
        elif isinstance(self.params, dict):
            self.params = build_params(m, self.params, "settings")
        elif not isinstance(self.params, m.params):
            raise ConfigError(f"settings: {self.method} takes {m.params.__name__} parameters, got {type(self.params).__name__}")

    @classmethod
    def of(cls, method_name: str, where: str = "settings", **kw: Any) -> "AlignSetting":
        """A setting from the flat form (``method``, its parameters and the common fields side by side)."""
        m = method(method_name, f"{where}.method")
        common = {k: kw.pop(k) for k in list(kw) if k in COMMON_FIELDS}
        p = build_params(m, kw, where)
        s = cls(method_name, p, **common)
        s.check(where)
        return s

    @property
    def spec(self) -> Any:
        return TRAINED_METHODS[self.method]

    def knob_value(self) -> Optional[float]:
        kp = self.spec.knob_param
        return None if kp is None else float(getattr(self.params, kp))

    def name(self) -> str:
        """The display label: ``label``, else the method and its parameters (``dpo beta=0.1``, ``sft lr x1``)."""
        if self.label:
            return self.label
        parts = [self.method] + [f"{k}={_fmt(v)}" for k, v in params_dict(self.params).items() if v not in ("", None)]
        if self.lr_factor != 1.0 or len(parts) == 1:
            parts.append(f"lr x{self.lr_factor:g}")
        if self.steps is not None:
            parts.append(f"steps={self.steps}")
        return " ".join(parts)

    def family(self) -> str:
        """The curve this setting is a point of: the method and every parameter but its knob (and the common
        fields when not the defaults). Settings of one family differ only in the knob."""
        kp = self.spec.knob_param
        parts = [self.method] + [f"{k}={_fmt(v)}" for k, v in params_dict(self.params).items() if k != kp and v not in ("", None)]
        if self.lr_factor != 1.0:
            parts.append(f"lr x{self.lr_factor:g}")
        if self.steps is not None:
            parts.append(f"steps={self.steps}")
        return " ".join(parts)

    def same_training(self, other: "AlignSetting") -> bool:
        """Everything but the label and α grid equal (the same adapter would be trained)."""
        return (self.method, self.params, self.lr_factor, self.steps) == (other.method, other.params, other.lr_factor, other.steps)

    def slug(self) -> str:
        keep = "".join(c if c.isalnum() or c in "=.-" else "_" for c in self.name())
        return keep.strip("_")[:80]

    def to_dict(self) -> dict[str, Any]:
        """The flat form (YAML names of the parameters), as a config writes it."""
        names = {v: k for k, v in self.spec.yaml_names().items()}
        d: dict[str, Any] = {"method": self.method}
        d.update({names.get(k, k): v for k, v in params_dict(self.params).items()})
        d.update({k: getattr(self, k) for k in COMMON_FIELDS if k != "method"})
        return d

    def training_dict(self) -> dict[str, Any]:
        """What the adapter depends on (the α grid left out: evaluation only)."""
        d = {"method": self.method, **params_dict(self.params)}
        d.update({k: getattr(self, k) for k in ("lr_factor", "steps", "label")})
        return d

    def check(self, where: str = "settings") -> None:
        if not (isinstance(self.lr_factor, (int, float)) and math.isfinite(self.lr_factor) and self.lr_factor > 0):
            raise ConfigError(f"{where}.lr_factor: {self.lr_factor!r} must be a positive number")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise ConfigError(f"{where}.steps: {self.steps!r} must be a positive integer")
        if self.label is not None and not isinstance(self.label, str):
            raise ConfigError(f"{where}.label: {self.label!r} must be text")


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) and not isinstance(v, bool) else str(v)


def replace(s: AlignSetting, **kw: Any) -> AlignSetting:
    return dataclasses.replace(s, **kw)
