"""Generative helpfulness tasks: GSM8K (exact match on the final number) and HumanEval (pass@1,
code run in the sandbox).

Both need a *finished* answer, so every record stores whether its generation hit the token budget
unfinished (``truncated``), and the default budget comes from the data: twice the 99th percentile of
the reference answers' token length under the model's own tokenizer (plus the restated prompt where
the protocol makes the model restate it), rounded up to a multiple of 32.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from typing import Any, Sequence

import numpy as np

from steertax.data import data_path, read_jsonl
from steertax.data.loaders import load_rows
from steertax.generation import Generation, Stop, generate_detailed
from steertax.tasks.base import EvalContext, Item, Task
from steertax.tasks.sandbox import run_python
from steertax.tasks.traits import NEEDS_FINISHED_ANSWER, TAX_BENCHMARK

_NUM = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
_ANSWER = re.compile(r"answer is", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
# GSM8K's stop rule: the line that states the final answer, once it is complete (its newline generated).
ANSWER_LINE = re.compile(r"answer is[^\n]*\d[^\n]*\n", re.IGNORECASE)


def final_number(text: str) -> str | None:
    """The answer's number, normalized (commas and $ removed, trailing .0 dropped): the number after
    ``####`` (the reference format), else the one in the last ``\\boxed{...}`` (LaTeX-style chat
    answers), else the first number after the last "answer is", else the last number in the text."""
    boxed = _BOXED.findall(text)
    if "####" in text:
        nums = _NUM.findall(text.split("####")[-1])
        pick = nums[-1] if nums else None
    elif boxed and _NUM.findall(boxed[-1]):
        pick = _NUM.findall(boxed[-1])[0]
    else:
        hits = list(_ANSWER.finditer(text))
        tail = _NUM.findall(text[hits[-1].end() :]) if hits else []
        nums = tail or _NUM.findall(text)
        pick = (tail[0] if tail else nums[-1]) if nums else None
    if pick is None:
        return None
    x = pick.replace(",", "").replace("$", "").rstrip(".")
    if "." in x:
        x = x.rstrip("0").rstrip(".")
    return x


def token_budget(lengths: Sequence[int], extra: float = 0.0, factor: float = 2.0, quantum: int = 32) -> int:
    """A generation budget from reference answers' token lengths: ``factor`` x their 99th percentile
    (model answers run longer than references: comments, explanations) plus ``extra``, rounded up to a
    multiple of ``quantum``."""
    p99 = float(np.percentile(np.asarray(lengths, dtype=float), 99))
    return int(math.ceil((factor * p99 + extra) / quantum) * quantum)


def _p99_tokens(tokenizer: Any, texts: Sequence[str]) -> float:
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return float(np.percentile([len(x) for x in ids], 99))


def _tokenizer_key(tokenizer: Any) -> tuple[str, int]:
    return (str(getattr(tokenizer, "name_or_path", "")), len(tokenizer))


def _gen(
    ctx: EvalContext,
    prompts: list[str],
    strengths: Sequence[float],
    max_new_tokens: int,
    chat: bool,
    *,
    prefill: list[str] | None = None,
    stop: Sequence[Stop] = (),
    do_sample: bool = False,
    temperature: float = 1.0,
    system: str | None = None,
) -> list[tuple[int, int, Generation]]:
    """Every prompt at every strength in one batched call: (prompt index, strength index, generation)."""
    rows = [(i, s) for s in range(len(strengths)) for i in range(len(prompts))]
    st = [float(strengths[s]) for _, s in rows]
    gens = generate_detailed(
        ctx.model,
        ctx.tokenizer,
        [prompts[i] for i, _ in rows],
        ctx.vector if any(st) else None,
        st if any(st) else 0.0,
        ctx.layers,
        chat=chat,
        system=system,
        prefill=None if prefill is None else [prefill[i] for i, _ in rows],
        stop=stop,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        seed=ctx.seed,
        batch_size=ctx.batch_size,
        progress=ctx.progress,
        force=ctx.force,
        backend=ctx.backend,
    )
    return [(i, s, g) for (i, s), g in zip(rows, gens, strict=True)]


class GSM8K(Task):
    """GSM8K test (1,319): greedy chain-of-thought answer, exact match on the final number. The answer
    stops after its final-answer line ("The answer is <number>"); base models also stop at a new
    "Question:"."""

    name = "gsm8k"
    axis = "helpfulness"
    metric = "acc"
    metrics = ("acc",)
    description = "GSM8K exact match"
    traits = frozenset({NEEDS_FINISHED_ANSWER, TAX_BENCHMARK})

    def __init__(self, *, max_new_tokens: int | None = None, chat: bool = True, source: Any = None) -> None:
        super().__init__(max_new_tokens=max_new_tokens, chat=chat, source=str(source) if source else None)
        self.max_new_tokens, self.chat, self.source = max_new_tokens, chat, source
        self._budgets: dict[tuple[str, int], int] = {}

    def load_items(self) -> list[Item]:
        rows = load_rows(self.source, lambda: read_jsonl(data_path("gsm8k", "test.jsonl")), ("question", "answer"), task=self.name)
        return [
            Item(
                str(r.get("id", f"gsm8k/{i}")),
                {"question": r["question"], "gold": final_number(str(r["answer"])), "answer": str(r["answer"])},
            )
            for i, r in enumerate(rows)
        ]

    def check_item(self, item: Item) -> str | None:
        if not isinstance(item.data.get("question"), str):
            return f"'question' must be text, got {item.data.get('question')!r}"
        if item.data.get("gold") is None:
            return "'answer' has no number: the last number in it is the gold answer (e.g. '... #### 42')"
        return None

    def budget(self, tokenizer: Any) -> int:
        """The token budget: ``max_new_tokens`` if set, else 2 x the 99th percentile of the reference
        solutions' length (all of this task's data, the model's tokenizer), rounded up to 32."""
        if self.max_new_tokens is not None:
            return int(self.max_new_tokens)
        key = _tokenizer_key(tokenizer)
        if key not in self._budgets:
            answers = [it.data["answer"] for it in self.load_items()]
            self._budgets[key] = token_budget([len(x) for x in tokenizer(answers, add_special_tokens=False)["input_ids"]])
        return self._budgets[key]

    def request_text(self, item: Item) -> str:
        return str(item.data["question"])

    def prompts(self, items: Sequence[Item]) -> list[str]:
        if self.chat:
            return [it.data["question"] + "\nSolve it step by step and end with 'The answer is <number>'." for it in items]
        return [f"Question: {it.data['question']}\nAnswer: Let's think step by step." for it in items]

    def stops(self) -> list[Stop]:
        return [ANSWER_LINE] if self.chat else [ANSWER_LINE, "\nQuestion:"]

    def score(self, ctx: EvalContext, items: Sequence[Item], strengths: Sequence[float]) -> list[dict[str, Any]]:
        out = []
        for i, s, g in _gen(ctx, self.prompts(items), strengths, self.budget(ctx.tokenizer), self.chat, stop=self.stops()):
            pred = final_number(g.text)
            out.append(
                {
                    "item": items[i].id,
                    "strength": float(strengths[s]),
                    "scorer": "generate",
                    "acc": float(pred is not None and pred == items[i].data["gold"]),
                    "pred": pred,
                    "truncated": float(g.truncated),
                    "n_tokens": g.n_tokens,
                    "text": g.text,
                }
            )
        return out


_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", re.DOTALL)
_FENCED_BLOCK = re.compile(r"```[^\n`]*\n.*?```", re.DOTALL)  # a complete fenced block (no-prefill chat stop rule)
_TOP_LEVEL_KEEP = ("def ", "async def ", "class ", "import ", "from ", "@", "#")
# A stop rule for code answers: a new top-level statement that is not a definition or import (example
# usage, prints, asserts, ``if __name__``) means the solution is finished. Only the newline is matched (the
# lookahead needs the statement's whole first word and the character after it, so a ``def`` still being
# generated never fires it); the answer keeps everything before the statement.
TOP_LEVEL_STATEMENT = re.compile(r"\n(?=(?!(?:def|class|import|from|async)\b)[A-Za-z_]\w*\W)")


def keep_definitions(code: str, entry_point: str | None = None) -> str:
    """``code`` up to its first top-level statement that is not a definition, import, decorator or
    comment (example usage, prints, asserts): the part of an answer that defines the solution. With
    ``entry_point``, only statements after that function's definition end it (module constants before
    it are part of the solution)."""
    lines: list[str] = []
    armed = entry_point is None or re.search(rf"^(?:async )?def {re.escape(entry_point)}\s*\(", code, re.MULTILINE) is None
    for ln in code.split("\n"):
        if armed and ln and not ln[0].isspace() and not ln.startswith(_TOP_LEVEL_KEEP) and lines:
            break
        if not armed and re.match(rf"(?:async )?def {re.escape(entry_point or '')}\s*\(", ln):
            armed = True
        lines.append(ln)
    return "\n".join(lines)


def humaneval_program(prompt: str, entry_point: str, body: str) -> str:
    """The program the checker runs for an answer that continues ``prompt`` (the prefilled chat protocol
    and base-model completion): prompt + body, the body cut at its first top-level non-definition. If the
    answer restated the function itself, the prompt's header (imports, helpers) + the answer."""
    body = keep_definitions(body, entry_point)
    if re.search(rf"^(?:async )?def {re.escape(entry_point)}\s*\(", body, re.MULTILINE):
        k = prompt.rfind(f"def {entry_point}")
        return (prompt[:k] if k >= 0 else "") + body
    return prompt + body


def extract_code(prompt: str, completion: str, entry_point: str) -> str:
    """The program to test for a free-form answer (chat without prefill): its fenced code block if there
    is one (the prompt prepended when the block lacks the function's definition), else the answer read
    as a continuation of the prompt."""
    m = _FENCE.search(completion)
    if m:
        code = keep_definitions(m.group(1), entry_point)
        return code if f"def {entry_point}" in code else prompt + code
    return humaneval_program(prompt, entry_point, completion)


class HumanEval(Task):
    """HumanEval (164): pass@1 estimated from ``n_samples`` completions per task (greedy by default;
    with n > 1, seeded sampling at ``temperature``). Every program runs in :mod:`steertax.tasks.sandbox`.

    Protocol. Chat models (``chat=True``) get the prompt in a code fence and, with ``prefill=True`` (the
    default), the assistant's answer starts with ```` ```python ```` + the prompt's signature and
    docstring, so the model writes the body; it stops at the closing fence or at a new top-level statement
    that is not a definition (example usage, prints: the function is done; helper definitions after it are
    kept). Base models (``chat=False``) continue the raw prompt and stop at a new top-level definition,
    comment or statement (the Codex protocol). The program checked is prompt + body either way.
    """

    name = "humaneval"
    axis = "helpfulness"
    metric = "pass"
    metrics = ("pass",)
    description = "HumanEval pass@1 (sandboxed)"
    traits = frozenset({NEEDS_FINISHED_ANSWER, TAX_BENCHMARK})
    USER = "Complete the following Python function.\n```python\n{prompt}```"
    SYSTEM_NO_PREFILL = (
        "Complete the given Python function correctly. Put the complete function in one ```python code block, "
        "apart from any explanation. Give one answer."
    )
    BASE_STOPS: tuple[Stop, ...] = ("\ndef ", "\nclass ", "\n#", TOP_LEVEL_STATEMENT)
    CHAT_STOPS: tuple[Stop, ...] = ("```", TOP_LEVEL_STATEMENT)

    def __init__(
        self,
        *,
        n_samples: int = 1,
        temperature: float = 0.8,
        max_new_tokens: int | None = None,
        chat: bool = True,
        prefill: bool = True,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(
            n_samples=n_samples, temperature=temperature, max_new_tokens=max_new_tokens, chat=chat, prefill=prefill, timeout=timeout
        )
        self.n, self.temperature, self.max_new_tokens, self.chat, self.timeout = n_samples, temperature, max_new_tokens, chat, timeout
        self.prefill = prefill and chat
        self._budgets: dict[tuple[str, int], int] = {}

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

    def budget(self, tokenizer: Any) -> int:
        """The token budget: ``max_new_tokens`` if set, else 2 x the 99th percentile of the canonical
        solutions' length under the model's tokenizer (+ the prompt's 99th percentile when the answer
        restates the function: chat without prefill), rounded up to 32."""
        if self.max_new_tokens is not None:
            return int(self.max_new_tokens)
        key = _tokenizer_key(tokenizer)
        if key not in self._budgets:
            items = self.load_items()
            lengths = [len(x) for x in tokenizer([it.data["canonical_solution"] for it in items], add_special_tokens=False)["input_ids"]]
            restated = 0.0 if (self.prefill or not self.chat) else _p99_tokens(tokenizer, [it.data["prompt"] for it in items])
            self._budgets[key] = token_budget(lengths, extra=restated)
        return self._budgets[key]

    def request_text(self, item: Item) -> str:
        return self.USER.format(prompt=item.data["prompt"])

    def protocol(self, items: Sequence[Item]) -> dict[str, Any]:
        """The generation inputs for ``items``: user prompts, prefills, stop rules, system prompt."""
        if not self.chat:
            return {"prompts": [it.data["prompt"] for it in items], "prefill": None, "stop": list(self.BASE_STOPS), "system": None}
        prompts = [self.USER.format(prompt=it.data["prompt"]) for it in items]
        if self.prefill:
            prefill = [f"```python\n{it.data['prompt']}" for it in items]
            return {"prompts": prompts, "prefill": prefill, "stop": list(self.CHAT_STOPS), "system": None}
        return {"prompts": prompts, "prefill": None, "stop": [_FENCED_BLOCK], "system": self.SYSTEM_NO_PREFILL}

    def program(self, item: Item, answer: str) -> str:
        """The program checked for one (stop-cut) answer under this task's protocol."""
        d = item.data
        if self.chat and not self.prefill:
            return extract_code(d["prompt"], answer, d["entry_point"])
        return humaneval_program(d["prompt"], d["entry_point"], answer)

    def check(self, item: Item, program: str) -> bool:
        d = item.data
        src = program + "\n\n" + d["test"] + f"\n\ncheck({d['entry_point']})\n"
        return run_python(src, timeout=self.timeout).passed

    def score(self, ctx: EvalContext, items: Sequence[Item], strengths: Sequence[float]) -> list[dict[str, Any]]:
        p = self.protocol(items)
        budget = self.budget(ctx.tokenizer)
        sample = self.n > 1
        passes: dict[tuple[int, int], list[bool]] = {}
        cut: dict[tuple[int, int], list[bool]] = {}
        first: dict[tuple[int, int], Generation] = {}
        for k in range(self.n):
            gen_ctx = EvalContext(**{**ctx.__dict__, "seed": ctx.seed + k})
            for i, s, g in _gen(
                gen_ctx,
                p["prompts"],
                strengths,
                budget,
                self.chat,
                prefill=p["prefill"],
                stop=p["stop"],
                do_sample=sample,
                temperature=self.temperature,
                system=p["system"],
            ):
                passes.setdefault((i, s), []).append(self.check(items[i], self.program(items[i], g.text)))
                cut.setdefault((i, s), []).append(g.truncated)
                first.setdefault((i, s), g)
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
                    "truncated": sum(cut[(i, s)]) / len(ps),
                    "n_tokens": first[(i, s)].n_tokens,
                    "text": first[(i, s)].text,
                }
            )
        return out
