"""DPO (Rafailov et al., 2023) on preference pairs through trl's ``DPOTrainer``; its knob is β.

β → ∞ holds the policy at the reference (the base): the KL-regularized optimum π ∝ π_ref·exp(reward/β) tilts
the base by reward/β, so the curve starts at the base and its laws are fitted along 1/β."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from steertax.manifest import Knob
from steertax.training.registry import param, register_trained_method
from steertax.training.trainer import lora_delta_sq_norm

__all__ = ["DPOParams", "BETA_KNOB", "dpo_trainer"]

BETA_KNOB = Knob("beta", "β", math.inf, "inverse")


@dataclass
class DPOParams:
    beta: float = param(0.1, "DPO's temperature β: smaller moves further from the base model")


def check_beta(p: Any) -> str | None:
    return None if p.beta > 0 else f"beta: {p.beta!r} must be positive (DPO's temperature, e.g. 0.1)"


def _regularized_dpo_trainer() -> type:
    from trl import DPOTrainer

    class RegularizedDPOTrainer(DPOTrainer):
        """DPO + lam * ||theta - theta_ref||^2, the adapter's weight delta (exact for LoRA)."""

        reg_lambda: float = 0.0

        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
            res = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            if not self.reg_lambda:
                return res
            pen = self.reg_lambda * lora_delta_sq_norm(model)
            mode = "train" if model.training else "eval"
            self._metrics[mode]["reg/delta_sq_norm"].append(float(pen.detach()) / self.reg_lambda)
            if return_outputs:
                return res[0] + pen, res[1]
            return res + pen

    return RegularizedDPOTrainer


def dpo_trainer(peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any], beta: float, lam: float = 0.0, **config: Any) -> Any:
    """trl's DPO trainer at ``beta`` (+ ``lam``·‖ΔW‖²_F when ``lam`` > 0); ``config``: more DPOConfig fields."""
    from trl import DPOConfig

    trainer = _regularized_dpo_trainer()(
        model=peft_model, args=DPOConfig(**common, **config, beta=beta), train_dataset=ds, processing_class=tokenizer
    )
    trainer.reg_lambda = float(lam)
    return trainer


@register_trained_method("dpo", params=DPOParams, knob=BETA_KNOB, knob_param="beta", check=check_beta)
def build(setting: Any, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any]) -> Any:
    """DPO on preference pairs at ``beta``."""
    return dpo_trainer(peft_model, tokenizer, ds, common, setting.params.beta)
