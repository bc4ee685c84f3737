"""Data quality ("high-quality alignment data reduces the tax"): DPO on the same preference pairs with a seeded
fraction ``flip`` of them flipped (chosen and rejected swapped). Its knob is that fraction f. f = 0 is DPO itself
(the DPO setting at the same β ends the curve there), not the base, so the curve does not start at the base: it
is compared with the others at matched ΔB and not fitted with the paper's laws."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from steertax.manifest import Knob
from steertax.training.data import RowsContext, preference_rows
from steertax.training.dpo import check_beta, dpo_trainer
from steertax.training.registry import Anchor, param, register_trained_method

FLIP_KNOB = Knob("flip", "f", None, None, "f = 0 is DPO itself, not the base: the curve does not start at the base")


@dataclass
class DataQualityParams:
    beta: float = param(0.1, "DPO's temperature β")
    flip: float = param(0.1, "the fraction f of preference pairs flipped (chosen and rejected swapped), 0 <= f < 1")


def _check(p: DataQualityParams) -> str | None:
    if msg := check_beta(p):
        return msg
    return None if 0.0 <= p.flip < 1.0 else f"flip: {p.flip!r} must be in [0, 1) (the fraction of pairs flipped)"


def flipped(rows: list[dict[str, Any]], f: float, seed: int) -> list[dict[str, Any]]:
    """``rows`` with round(f·n) of them, chosen by a seeded draw, flipped."""
    idx = set(random.Random(seed + 7).sample(range(len(rows)), round(f * len(rows))))
    return [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} if i in idx else dict(r) for i, r in enumerate(rows)]


def rows(ctx: RowsContext, setting: Any) -> list[dict[str, Any]]:
    return flipped(preference_rows(ctx, setting), setting.params.flip, ctx.seed)


@register_trained_method(
    "data_quality",
    params=DataQualityParams,
    rows=rows,
    knob=FLIP_KNOB,
    knob_param="flip",
    anchor=lambda p: Anchor("dpo", {"beta": p.beta}, 0.0),
    check=_check,
)
def build(setting: Any, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any]) -> Any:
    """DPO on the preference pairs with a fraction ``flip`` of them flipped."""
    return dpo_trainer(peft_model, tokenizer, ds, common, setting.params.beta)
