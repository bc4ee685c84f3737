"""Curriculum alignment ("align gradually, not all at once"): DPO with the preference pairs ordered easy → hard
by the reference model's margin log π_ref(chosen) − log π_ref(rejected) (the pairs it already prefers first),
against the same pairs in a seeded shuffle (``order: shuffled``). Both see the same train.steps × batch_size
pairs, in order (trl's sequential sampler). The knob is the share of training done: one run is saved at ¼, ½,
¾ and 1 of its steps and each checkpoint is evaluated, so one training gives one curve whose 0 is the base."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from steertax.manifest import Knob
from steertax.models import format_chat
from steertax.scoring import continuation_logprobs
from steertax.training.data import RowsContext, preference_rows
from steertax.training.dpo import check_beta, dpo_trainer
from steertax.training.registry import param, register_trained_method

SHARE_KNOB = Knob("share", "share")
ORDERS = ("easy_first", "shuffled")


@dataclass
class CurriculumParams:
    beta: float = param(0.1, "DPO's temperature β")
    order: str = param("easy_first", "easy_first: pairs by the reference model's margin, largest first; shuffled: a seeded shuffle")


def _check(p: CurriculumParams) -> str | None:
    if msg := check_beta(p):
        return msg
    return None if p.order in ORDERS else f"order: {p.order!r} is not one of {', '.join(ORDERS)}"


def reference_margins(model: Any, tokenizer: Any, pairs: list[dict[str, Any]]) -> list[float]:
    """log P(chosen | prompt) − log P(rejected | prompt) under the base model (the DPO reference)."""
    lp = continuation_logprobs(
        model, tokenizer, [format_chat(tokenizer, r["prompt"]) for r in pairs], [[r["chosen"], r["rejected"]] for r in pairs]
    )
    return [float(a - b) for a, b in lp.tolist()]


def rows(ctx: RowsContext, setting: Any) -> list[dict[str, Any]]:
    steps = setting.steps or ctx.train.steps
    pairs = preference_rows(ctx, setting)[: steps * ctx.train.batch_size]
    if setting.params.order == "shuffled":
        random.Random(ctx.seed + 11).shuffle(pairs)
        return pairs
    margin = reference_margins(ctx.model, ctx.tokenizer, pairs)
    order = sorted(range(len(pairs)), key=lambda i: (-margin[i], i))
    return [pairs[i] for i in order]


@register_trained_method(
    "curriculum",
    params=CurriculumParams,
    rows=rows,
    knob=SHARE_KNOB,
    checkpoints=(0.25, 0.5, 0.75, 1.0),
    check=_check,
)
def build(setting: Any, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any]) -> Any:
    """DPO over the pairs in the given order (no reshuffling)."""
    return dpo_trainer(peft_model, tokenizer, ds, common, setting.params.beta, train_sampling_strategy="sequential")
