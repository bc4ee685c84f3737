"""KTO (Ethayarajh et al., 2024) through trl's ``KTOTrainer``: unpaired feedback, each answer labelled desirable
or not. Its rows are the preference pairs unpaired (the chosen answer desirable, the rejected one not), or a
JSONL with ``prompt``, ``completion`` and a boolean ``label`` (``data.pairs: kto:<path>``). Its knob is β: KTO's
value σ(β·(log π/π_ref − z₀)) plays DPO's temperature, β → ∞ holding the policy at the reference (the base), so
its laws are fitted along 1/β as DPO's."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steertax.data import read_jsonl
from steertax.errors import DataError
from steertax.manifest import Knob
from steertax.training.data import RowsContext, preference_rows
from steertax.training.dpo import check_beta
from steertax.training.registry import param, register_trained_method

KTO_BETA = Knob("beta", "β", math.inf, "inverse")


@dataclass
class KTOParams:
    beta: float = param(0.1, "KTO's temperature β (trl's KTOConfig.beta)")
    labels: str = param("", "a JSONL of unpaired rows (prompt, completion, label true/false); empty: the preference pairs unpaired")


def read_unpaired(path: str | Path) -> list[dict[str, Any]]:
    """A JSONL of KTO's unpaired rows: non-empty ``prompt`` and ``completion`` text and a boolean ``label``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"KTO label file {p} does not exist: give a .jsonl with prompt, completion and label (true/false)")
    rows = read_jsonl(p)
    if not rows:
        raise DataError(f"{p}: no rows; each line needs prompt, completion and label (true/false)")
    for n, r in enumerate(rows, 1):
        for col in ("prompt", "completion"):
            if not isinstance(r.get(col), str) or not r[col].strip():
                raise DataError(f"{p} row {n}: column {col!r} is missing or empty; KTO rows need prompt, completion and label")
        if not isinstance(r.get("label"), bool):
            raise DataError(f"{p} row {n}: column 'label' must be true or false (got {r.get('label')!r}); KTO needs a label per answer")
    return [{"prompt": r["prompt"], "completion": r["completion"], "label": r["label"]} for r in rows]


def _check(p: KTOParams) -> str | None:
    if msg := check_beta(p):
        return msg
    if p.labels:
        try:
            read_unpaired(p.labels)
        except DataError as e:
            return f"labels: {e}"
    return None


def rows(ctx: RowsContext, setting: Any) -> list[dict[str, Any]]:
    if setting.params.labels:
        return read_unpaired(setting.params.labels)[: ctx.data.n_pairs * 2]
    out: list[dict[str, Any]] = []
    for r in preference_rows(ctx, setting):
        out += [
            {"prompt": r["prompt"], "completion": r["chosen"], "label": True},
            {"prompt": r["prompt"], "completion": r["rejected"], "label": False},
        ]
    return out


@register_trained_method(
    "kto", params=KTOParams, rows=rows, columns=("completion", "label"), knob=KTO_BETA, knob_param="beta", check=_check
)
def build(setting: Any, peft_model: Any, tokenizer: Any, ds: Any, common: dict[str, Any]) -> Any:
    """KTO on unpaired desirable/undesirable answers at ``beta``."""
    from trl import KTOConfig, KTOTrainer

    args = KTOConfig(**common, beta=setting.params.beta)
    return KTOTrainer(model=peft_model, args=args, train_dataset=ds, processing_class=tokenizer)
