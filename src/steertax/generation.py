"""Batched, left-padded generation under steering (greedy by default, seeded sampling optional).

Every answer is returned with how it ended: by the end-of-sequence token, by a stop rule (a stop
string, or a pattern such as a final-answer line), or cut off at ``max_new_tokens`` (``truncated``).
A truncated answer is an unfinished one; scorers record it rather than score it silently as wrong.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any, Sequence, Union

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from .activations import _model_device, pad_batch
from .models import encode, format_chat
from .steering import Operator, Positions, check_strength, steer

__all__ = ["generate", "generate_detailed", "Generation", "Stop", "cut_at_stop"]

Stop = Union[str, "re.Pattern[str]"]
"""A stop rule. A string ends the answer *before* itself (a stop sequence such as a closing code
fence); a compiled pattern ends it *after* its match (a final-answer line such as
``The answer is 42.\\n``)."""


@dataclass(frozen=True)
class Generation:
    """One generated answer. ``text`` is the new text (without the prompt or prefill), cut at the stop
    rule that ended it; ``stop`` names what ended it ("eos", the stop rule, or None when it ran out of
    tokens); ``truncated`` is True when it hit ``max_new_tokens`` unfinished."""

    text: str
    truncated: bool
    n_tokens: int
    stop: str | None


def cut_at_stop(text: str, stops: Sequence[Stop]) -> tuple[str, str | None]:
    """``text`` cut at the earliest stop rule it contains (strings before themselves, patterns after
    their match) and the rule that fired; ``(text, None)`` when none does."""
    best: tuple[int, str, str] | None = None
    for s in stops:
        if isinstance(s, str):
            k = text.find(s)
            if k >= 0 and (best is None or k < best[0]):
                best = (k, text[:k], s)
        else:
            m = s.search(text)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), text[: m.end()], s.pattern)
    return (text, None) if best is None else (best[1], best[2])


class _StopRules(StoppingCriteria):
    """Ends each row of a batch at its first stop rule, checked on the decoded new text (the prompt and
    prefill excluded). transformers' StopStringCriteria handles plain strings only; the final-answer
    rule of maths tasks is a pattern, so both kinds are checked here, on text, the same way."""

    def __init__(self, tokenizer: Any, start: int, stops: Sequence[Stop], n_rows: int) -> None:
        self.tok, self.start, self.stops = tokenizer, start, list(stops)
        self.done = [False] * n_rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        new = input_ids[:, self.start :].tolist()
        for row, ids in enumerate(new):
            if not self.done[row] and cut_at_stop(self.tok.decode(ids, skip_special_tokens=True), self.stops)[1] is not None:
                self.done[row] = True
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), tokenizer):
        e = getattr(src, "eos_token_id", None)
        if isinstance(e, int):
            ids.add(e)
        elif isinstance(e, (list, tuple)):
            ids.update(int(x) for x in e)
    return ids


def _per_prompt(value: str | Sequence[str] | None, n: int, what: str) -> list[str]:
    if value is None:
        return [""] * n
    if isinstance(value, str):
        return [value] * n
    if len(value) != n:
        raise ValueError(f"got {len(value)} {what} values for {n} prompts: give one, or one per prompt")
    return [str(v) for v in value]


def generate_detailed(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str] | str,
    vector: Any = None,
    strength: float | Sequence[float] | torch.Tensor = 0.0,
    layers: Any = None,
    *,
    positions: Positions = "all",
    operator: Operator = "add",
    relative: bool = False,
    chat: bool = True,
    system: str | None = None,
    prefill: str | Sequence[str] | None = None,
    stop: Sequence[Stop] = (),
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = False,
    force: bool = False,
    condition: Any = None,
) -> list[Generation]:
    """Generate answers for ``prompts`` (user messages, chat-formatted unless ``chat=False``).

    ``strength`` is one value for all prompts or one per prompt (rows with different strengths share
    batches). Without ``vector`` the model runs unsteered. ``prefill`` starts the assistant's answer
    (one text, or one per prompt; it is part of the prompt, not of the returned text). ``stop`` ends a
    row at its first stop rule (see :data:`Stop`). ``condition``: conditional steering; it reads each
    prompt (the user message, as the study reads a request) once, and only the rows it fires on are
    steered, the others get strength exactly 0. Returns one :class:`Generation` per prompt.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    n = len(prompts)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    s = check_strength(strength)
    if isinstance(s, torch.Tensor) and s.numel() != n:
        raise ValueError(f"got {s.numel()} strengths for {n} prompts: give one strength, or one per prompt")
    if condition is not None and vector is not None and operator != "add":
        raise ValueError(f"a condition gates the strength, but operator {operator!r} changes rows at strength 0 too: use operator='add'")
    if condition is not None and vector is not None:
        # conditional steering: the condition reads each request once; a prompt it does not fire on gets strength exactly 0
        from .condition import check_condition_layer, gate_items
        from .steering import steered_layers

        check_condition_layer(condition, steered_layers(model, vector, layers))
        fired, _ = gate_items(condition, model, tokenizer, list(prompts), batch_size=batch_size)
        s = torch.as_tensor(fired, dtype=torch.float32) * (s if isinstance(s, torch.Tensor) else torch.full((n,), float(s)))
    pre = _per_prompt(prefill, n, "prefill")
    texts = [format_chat(tokenizer, p, system=system, chat=chat) + f for p, f in zip(prompts, pre, strict=True)]
    enc = [encode(tokenizer, t) for t in texts]
    order = sorted(range(n), key=lambda i: -len(enc[i]))
    dev = _model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = tokenizer.eos_token_id
    finish_ids = _eos_ids(model, tokenizer) | ({int(eos)} if eos is not None else set())
    out: list[Generation | None] = [None] * n
    gen_kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad_id)
    if eos is not None:
        gen_kw["eos_token_id"] = eos
    if do_sample:
        gen_kw.update(temperature=temperature, top_p=top_p)
    else:
        gen_kw.update(temperature=None, top_p=None, top_k=None)
    bar = tqdm(total=n, desc="generate", unit="prompt", disable=not progress, leave=False)
    for b0 in range(0, n, batch_size):
        idx = order[b0 : b0 + batch_size]
        ids, mask = pad_batch([enc[i] for i in idx], pad_id, "left", dev)
        if vector is None:
            ctx: Any = contextlib.nullcontext()
        else:
            st = s[torch.as_tensor(idx)] if isinstance(s, torch.Tensor) else s
            ctx = steer(model, vector, st, layers, positions=positions, operator=operator, relative=relative, force=force)
        kw = dict(gen_kw)
        if stop:
            kw["stopping_criteria"] = StoppingCriteriaList([_StopRules(tokenizer, ids.shape[1], stop, len(idx))])
        if do_sample:
            torch.manual_seed(seed + b0)
        with ctx, torch.inference_mode():
            res = model.generate(input_ids=ids, attention_mask=mask, **kw)
        new = res[:, ids.shape[1] :].tolist()
        for row, i in enumerate(idx):
            out[i] = _finish(tokenizer, new[row], finish_ids, pad_id, stop, max_new_tokens)
        bar.update(len(idx))
    bar.close()
    return [g for g in out if g is not None]


def _finish(tokenizer: Any, new: list[int], finish_ids: set[int], pad_id: int, stop: Sequence[Stop], max_new_tokens: int) -> Generation:
    """How one row ended: at an end-of-sequence token, at a stop rule, or unfinished at the budget."""
    end = next((k for k, t in enumerate(new) if t in finish_ids), None)
    body = new if end is None else new[:end]
    text, rule = cut_at_stop(tokenizer.decode(body, skip_special_tokens=True), stop)
    if end is not None:
        return Generation(text, False, end, rule or "eos")
    n_tok = len(body)
    while n_tok and body[n_tok - 1] == pad_id and rule is not None:  # padding after a stop rule ended the row
        n_tok -= 1
    return Generation(text, rule is None and len(new) >= max_new_tokens, n_tok, rule)


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str] | str,
    vector: Any = None,
    strength: float | Sequence[float] | torch.Tensor = 0.0,
    layers: Any = None,
    **kwargs: Any,
) -> list[str]:
    """The answers' texts only; see :func:`generate_detailed` for the options and how each answer ended."""
    return [g.text for g in generate_detailed(model, tokenizer, prompts, vector, strength, layers, **kwargs)]
