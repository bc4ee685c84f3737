"""Generative helpfulness tasks: GSM8K (exact match on the final number) and HumanEval (pass@1,
code run in the sandbox)."""

from __future__ import annotations

import gzip
import json
import re
from math import comb
from typing import Any, Sequence

from ..data import data_path, read_jsonl
from ..generation import generate
from ..sandbox import run_python
from .base import EvalContext, Item, Task
from .loaders import load_rows

_NUM = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def final_number(text: str) -> str | None:
    """The last number in a text, normalized (commas and $ removed, trailing .0 dropped)."""
    m = text.split("####")[-1] if "####" in text else text
    nums = _NUM.findall(m)
    if not nums:
        return None
    x = nums[-1].replace(",", "").replace("$", "").rstrip(".")
    if "." in x:
        x = x.rstrip("0").rstrip(".")
    return x


def _gen(
    ctx: EvalContext,
    prompts: list[str],
    strengths: Sequence[float],
    max_new_tokens: int,
    chat: bool,
    do_sample: bool = False,
    temperature: float = 1.0,
    system: str | None = None,
) -> list[tuple[int, int, str]]:
    rows = [(i, s) for s in range(len(strengths)) for i in range(len(prompts))]
    st = [float(strengths[s]) for _, s in rows]
    texts = generate(
        ctx.model,
        ctx.tokenizer,
        [prompts[i] for i, _ in rows],
        ctx.vector if any(st) else None,
        st if any(st) else 0.0,
        ctx.layers,
        chat=chat,
        system=system,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        seed=ctx.seed,
        batch_size=ctx.batch_size,
        progress=ctx.progress,
        force=ctx.force,
    )
    return [(i, s, t) for (i, s), t in zip(rows, texts, strict=True)]


class GSM8K(Task):
    """GSM8K test (1,319): greedy chain-of-thought answer, exact match on the final number."""

    name = "gsm8k"
    axis = "helpfulness"
    metric = "acc"
    metrics = ("acc",)
    description = "GSM8K exact match"

    def __init__(self, *, max_new_tokens: int = 256, chat: bool = True, source: Any = None) -> None:
        super().__init__(max_new_tokens=max_new_tokens, chat=chat, source=str(source) if source else None)
        self.max_new_tokens, self.chat, self.source = max_new_tokens, chat, source

    def load_items(self) -> list[Item]:
        rows = load_rows(self.source, lambda: read_jsonl(data_path("gsm8k", "test.jsonl")), ("question", "answer"), task=self.name)
        return [
            Item(str(r.get("id", f"gsm8k/{i}")), {"question": r["question"], "gold": final_number(str(r["answer"]))})
            for i, r in enumerate(rows)
        ]

    def check_item(self, item: Item) -> str | None:
        if not isinstance(item.data.get("question"), str):
            return f"'question' must be text, got {item.data.get('question')!r}"
        if item.data.get("gold") is None:
            return "'answer' has no number: the last number in it is the gold answer (e.g. '... #### 42')"
        return None

    def score(self, ctx: EvalContext, items: Sequence[Item], strengths: Sequence[float]) -> list[dict[str, Any]]:
        if self.chat:
            prompts = [it.data["question"] + "\nSolve it step by step and end with 'The answer is <number>'." for it in items]
        else:
            prompts = [f"Question: {it.data['question']}\nAnswer: Let's think step by step." for it in items]
        out = []
        for i, s, text in _gen(ctx, prompts, strengths, self.max_new_tokens, self.chat):
            pred = final_number(text)
            out.append(
                {
                    "item": items[i].id,
                    "strength": float(strengths[s]),
                    "scorer": "generate",
                    "acc": float(pred is not None and pred == items[i].data["gold"]),
                    "pred": pred,
                    "text": text,
                }
            )
        return out


_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)


def extract_code(prompt: str, completion: str, entry_point: str) -> str:
    """The program to test: a fenced code block if there is one (the prompt prepended when the block
    lacks the function's definition), else the prompt plus the raw completion (base-model style)."""
    m = _FENCE.search(completion)
    if m:
        code = m.group(1)
        if f"def {entry_point}" not in code:
            code = prompt + code
        return code
    if f"def {entry_point}" in completion:
        return completion
    # raw continuation of the function body: stop at the first top-level statement after it
    lines: list[str] = []
    for ln in completion.split("\n"):
        if ln and not ln[0].isspace() and not ln.startswith(("#",)) and lines:
            break
        lines.append(ln)
    return prompt + "\n".join(lines)


class HumanEval(Task):
    """HumanEval (164): pass@1 estimated from ``n_samples`` completions per task (greedy by default;
    with n > 1, seeded sampling at ``temperature``). Every program runs in :mod:`steertax.sandbox`."""

    name = "humaneval"
    axis = "helpfulness"
    metric = "pass"
    metrics = ("pass",)
    description = "HumanEval pass@1 (sandboxed)"
    SYSTEM = (
        "Complete the given Python function correctly. Put the complete function in one ```python code block, "
        "apart from any explanation. Give one answer."
    )

    def __init__(
        self, *, n_samples: int = 1, temperature: float = 0.8, max_new_tokens: int = 384, chat: bool = True, timeout: float = 10.0
    ) -> None:
        super().__init__(n_samples=n_samples, temperature=temperature, max_new_tokens=max_new_tokens, chat=chat, timeout=timeout)
        self.n, self.temperature, self.max_new_tokens, self.chat, self.timeout = n_samples, temperature, max_new_tokens, chat, timeout

    def load_items(self) -> list[Item]:
        with gzip.open(data_path("humaneval", "HumanEval.jsonl.gz"), "rt", encoding="utf-8") as f:
            rows = [json.loads(x) for x in f if x.strip()]
        return [
            Item(
                r["task_id"],
                {"prompt": r["prompt"], "test": r["test"], "entry_point": r["entry_point"], "canonical_solution": r["canonical_solution"]},
            )
            for r in rows
        ]

    def check(self, item: Item, program: str) -> bool:
        d = item.data
        src = program + "\n\n" + d["test"] + f"\n\ncheck({d['entry_point']})\n"
        return run_python(src, timeout=self.timeout).passed

    def score(self, ctx: EvalContext, items: Sequence[Item], strengths: Sequence[float]) -> list[dict[str, Any]]:
        if self.chat:
            prompts = [f"```python\n{it.data['prompt']}```" for it in items]
        else:
            prompts = [it.data["prompt"] for it in items]
        sample = self.n > 1
        passes: dict[tuple[int, int], list[bool]] = {}
        texts: dict[tuple[int, int], str] = {}
        for k in range(self.n):
            gen_ctx = EvalContext(**{**ctx.__dict__, "seed": ctx.seed + k})
            for i, s, text in _gen(
                gen_ctx,
                prompts,
                strengths,
                self.max_new_tokens,
                self.chat,
                do_sample=sample,
                temperature=self.temperature,
                system=self.SYSTEM if self.chat else None,
            ):
                code = extract_code(items[i].data["prompt"], text, items[i].data["entry_point"])
                passes.setdefault((i, s), []).append(self.check(items[i], code))
                texts.setdefault((i, s), text)
        out = []
        for (i, s), ps in sorted(passes.items()):
            c = sum(ps)
            out.append(
                {
                    "item": items[i].id,
                    "strength": float(strengths[s]),
                    "scorer": "generate",
                    "pass": c / len(ps),
                    "n_samples": len(ps),
                    "n_correct": c,
                    "text": texts[(i, s)],
                }
            )
        return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)
