"""Supervised fine-tuning on the chosen answers (the refusals) through trl's ``SFTTrainer``, loss on the answer
only. A point, not a curve (its α curve, weight interpolation, is the knob)."""

from __future__ import annotations

from typing import Any

from steertax.training.data import RowsContext, preference_rows
from steertax.training.registry import register_trained_method


def rows(ctx: RowsContext, setting: Any) -> list[dict[str, Any]]:
    return [{"prompt": r["prompt"], "completion": r["chosen"]} for r in preference_rows(ctx, setting)]


@register_trained_method("sft", rows=rows, columns=("completion",))
def build(setting: Any, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any]) -> Any:
    """Supervised fine-tuning on the refusals (loss on the answer only)."""
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**common, completion_only_loss=True)
    return SFTTrainer(model=peft_model, args=args, train_dataset=ds, processing_class=tokenizer)
