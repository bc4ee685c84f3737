"""ORPO (Hong et al., 2024): odds-ratio preference optimization without a reference model, through trl's
``ORPOTrainer`` (under ``trl.experimental`` in the locked trl 1.16: an unstable API, imported here only, its
import-time notice silenced; ``tests/test_training_methods.py`` pins what steertax relies on). Its knob is β,
the weight of the odds-ratio term beside the SFT loss on the chosen answer. β = 0 is SFT on the chosen answers,
not the base model, so the β curve does not start at the base: it is compared at matched ΔB and not fitted."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from steertax.manifest import Knob
from steertax.training.dpo import check_beta
from steertax.training.registry import param, register_trained_method

ORPO_BETA = Knob("beta", "β", None, None, "ORPO at β = 0 is SFT on the chosen answers, not the base: its curve does not start at the base")


@dataclass
class ORPOParams:
    beta: float = param(0.1, "ORPO's weight β on the odds-ratio term (trl's ORPOConfig.beta)")


def orpo_classes() -> tuple[type, type]:
    """trl's ORPOConfig and ORPOTrainer, imported without trl.experimental's import-time notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*trl\.experimental.*")
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    return ORPOConfig, ORPOTrainer


@register_trained_method("orpo", params=ORPOParams, knob=ORPO_BETA, knob_param="beta", check=check_beta)
def build(setting: Any, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any]) -> Any:
    """ORPO on preference pairs at ``beta`` (no reference model)."""
    ORPOConfig, ORPOTrainer = orpo_classes()
    args = ORPOConfig(**common, beta=setting.params.beta, remove_unused_columns=False)  # its collator needs the columns
    return ORPOTrainer(model=peft_model, args=args, train_dataset=ds, processing_class=tokenizer)
