"""Regularized DPO: DPO + λ·‖ΔW‖²_F summed over the adapted weights (ΔW = scale·B·A, the adapter's weight
delta, which for LoRA is exactly ‖θ − θ_ref‖²). Its knob is λ: λ → ∞ holds the weights at the base, and
λ = 0 is DPO at the same β (bit for bit), so each λ curve ends at that DPO setting."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from steertax.manifest import Knob
from steertax.training.dpo import check_beta, dpo_trainer
from steertax.training.registry import Anchor, param, register_trained_method

LAMBDA_KNOB = Knob("lambda", "λ", math.inf, "inverse")


@dataclass
class DPORegParams:
    beta: float = param(0.1, "DPO's temperature β")
    lam: float = param(0.0, "weight λ of the penalty ‖ΔW‖²_F on the adapter's weight delta (0: DPO)", yaml="lambda")


def _check(p: DPORegParams) -> str | None:
    return check_beta(p) or (f"lambda: {p.lam!r} must be 0 or more" if p.lam < 0 else None)


@register_trained_method(
    "dpo_reg",
    params=DPORegParams,
    knob=LAMBDA_KNOB,
    knob_param="lam",
    anchor=lambda p: Anchor("dpo", {"beta": p.beta}, 0.0),
    check=_check,
)
def build(setting: Any, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any]) -> Any:
    """DPO + lam * ||dW||_F^2 (the adapter's weight delta)."""
    return dpo_trainer(peft_model, tokenizer, ds, common, setting.params.beta, setting.params.lam)
