"""Drift: how far steering moves the next-token distribution on neutral text, the cheapest
helpfulness proxy. Items: benign instructions with reference answers (AlpacaEval's 805, reference
answers by text-davinci-003). Per item and strength: ``kl`` = mean over the first ``max_answer_tokens``
answer tokens of KL(steered || unsteered), ``ce`` = the reference answer's mean token cross-entropy
under the steered model, ``ce_delta`` = ce minus the unsteered ce. For a modified model (an adapter,
merged weights) "unsteered" is the base model, reached through the context's ``reference``; under an aligning
prompt it is the base model reading the unprompted prompt."""

from __future__ import annotations

from typing import Any, Sequence

from steertax.data import data_path, read_jsonl
from steertax.data.loaders import load_rows
from steertax.models import format_chat, unprompted
from steertax.scoring import drift
from steertax.tasks.base import EvalContext, Item, Task
from steertax.tasks.traits import DISTANCE_FROM_BASE

DRIFT_METRICS = ("kl", "ce", "ce_delta")  # distances from the base model, not helpfulness scores (no tax %)


class Drift(Task):
    name = "drift"
    traits = frozenset({DISTANCE_FROM_BASE})
    axis = "helpfulness"
    metric = "kl"
    metrics = DRIFT_METRICS
    description = "KL(steered || unsteered) and cross-entropy on neutral text"

    def __init__(self, *, max_answer_tokens: int = 48, chat: bool = True, source: Any = None) -> None:
        super().__init__(max_answer_tokens=max_answer_tokens, chat=chat, source=str(source) if source else None)
        self.max_answer_tokens, self.chat, self.source = max_answer_tokens, chat, source

    def load_items(self) -> list[Item]:
        rows = load_rows(
            self.source, lambda: read_jsonl(data_path("alpaca_eval", "alpaca_eval.jsonl")), ("instruction", "output"), task=self.name
        )
        return [
            Item(str(r.get("id", f"alpaca_eval/{i}")), {"instruction": r["instruction"], "output": r["output"]}) for i, r in enumerate(rows)
        ]

    def request_text(self, item: Item) -> str:
        return str(item.data["instruction"])

    def score(self, ctx: EvalContext, items: Sequence[Item], strengths: Sequence[float]) -> list[dict[str, Any]]:
        tok = ctx.tokenizer
        texts = [it.data["instruction"] + ("" if self.chat else "\n") for it in items]
        prompts = [format_chat(tok, t, chat=self.chat) for t in texts]
        base_tok = unprompted(tok)  # under an aligning prompt, the reference is the unprompted base
        ref = [format_chat(base_tok, t, chat=self.chat) for t in texts] if base_tok is not tok else None
        S = list(strengths)
        withzero = S if 0.0 in S else S + [0.0]
        kl, ce, n, ce0 = drift(
            ctx.model,
            tok,
            prompts,
            [it.data["output"] for it in items],
            withzero,
            ctx.vector,
            ctx.layers,
            max_answer_tokens=self.max_answer_tokens,
            batch_size=ctx.batch_size,
            force=ctx.force,
            progress=ctx.progress,
            reference=ctx.reference,
            reference_prompts=ref,
        )
        out = []
        for i, it in enumerate(items):
            for s, sv in enumerate(S):
                out.append(
                    {
                        "item": it.id,
                        "strength": float(sv),
                        "scorer": "logprob",
                        "kl": float(kl[i, s]),
                        "ce": float(ce[i, s]),
                        "ce_delta": float(ce[i, s] - ce0[i]),
                        "n_tokens": int(n[i]),
                    }
                )
        return out
