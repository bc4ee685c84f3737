"""Selective alignment: DPO on the harmful pairs plus capability-preservation pairs (a benign prompt -> the
base model's own greedy answer chosen, a refusal rejected), usually at a lower learning rate (``lr_factor``).
Answers cut at ``data.preserve_tokens`` are dropped and counted (a cut answer would teach stopping early)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from steertax.training.data import RowsContext, preference_rows, preservation
from steertax.training.dpo import check_beta, dpo_trainer
from steertax.training.registry import param, register_trained_method


@dataclass
class SelectiveParams:
    beta: float = param(0.1, "DPO's temperature β")


def rows(ctx: RowsContext, setting: Any) -> list[dict[str, Any]]:
    mixed = preference_rows(ctx, setting) + preservation(ctx)["pairs"]
    random.Random(ctx.seed).shuffle(mixed)
    return mixed


def report(ctx: RowsContext) -> dict[str, Any]:
    """How many preservation answers were used and dropped (the adapter's setting.json keeps it)."""
    keep = preservation(ctx)
    return {k: keep[k] for k in ("asked", "dropped_truncated", "max_new_tokens")} | {"kept": len(keep["pairs"])}


@register_trained_method(  # 2: truncated preservation answers dropped
    "selective",
    version=2,
    params=SelectiveParams,
    rows=rows,
    data_fields=("pairs", "n_pairs", "n_preserve", "preserve_tokens"),
    check=check_beta,
    report=report,
)
def build(setting: Any, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any]) -> Any:
    """DPO on the harmful pairs plus capability-preservation pairs."""
    return dpo_trainer(peft_model, tokenizer, ds, common, setting.params.beta)
