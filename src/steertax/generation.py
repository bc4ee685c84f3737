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

from steertax.errors import ConfigError
from steertax.interventions.conditional import check_condition_layer, gate_items
from steertax.interventions.steering.activations import accepts_position_ids, cache_arg, forward, model_device, output_cache, pad_batch
from steertax.interventions.steering.hooks import (
    Operator,
    Positions,
    check_strength,
    layer_strengths,
    shared_trunk,
    steer,
    steered_layers,
    steering_directions,
    trunk_layer,
)
from steertax.models import encode, format_chat
from steertax.scoring import accepts_logits_to_keep, index_cache
from steertax.vllm_backend import generate_tokens

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
    backend: str = "hf",
    fast: bool = False,
) -> list[Generation]:
    """Generate answers for ``prompts`` (user messages, chat-formatted unless ``chat=False``).

    ``strength`` is one value for all prompts or one per prompt (rows with different strengths share
    batches). Without ``vector`` the model runs unsteered. ``prefill`` starts the assistant's answer
    (one text, or one per prompt; it is part of the prompt, not of the returned text). ``stop`` ends a
    row at its first stop rule (see :data:`Stop`). ``condition``: conditional steering; it reads each
    prompt (the user message, as the study reads a request) once, and only the rows it fires on are
    steered, the others get strength exactly 0. ``backend="vllm"`` runs the same generation on vLLM
    (:mod:`steertax.vllm_backend`; its own environment, ``make vllm``). ``fast=True`` uses
    :func:`greedy_tokens` for greedy decoding (same tokens; shared trunk over the prompt, batch from free
    memory, finished rows leave): 1.37x HF ``generate`` on one study cell on a 2-core CPU
    (``benchmarks/generate_speed.py``), not yet measured on a GPU, so opt-in for now. Returns one :class:`Generation` per prompt.
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

        check_condition_layer(condition, steered_layers(model, vector, layers))
        fired, _ = gate_items(condition, model, tokenizer, list(prompts), batch_size=batch_size)
        s = torch.as_tensor(fired, dtype=torch.float32) * (s if isinstance(s, torch.Tensor) else torch.full((n,), float(s)))
    pre = _per_prompt(prefill, n, "prefill")
    texts = [format_chat(tokenizer, p, system=system, chat=chat) + f for p, f in zip(prompts, pre, strict=True)]
    enc = [encode(tokenizer, t) for t in texts]
    if backend != "hf":
        return _generate_vllm(
            model,
            tokenizer,
            enc,
            vector,
            s,
            layers,
            backend,
            positions,
            operator,
            relative,
            force,
            stop,
            max_new_tokens,
            do_sample,
            temperature,
            top_p,
            seed,
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = tokenizer.eos_token_id
    finish_ids = _eos_ids(model, tokenizer) | ({int(eos)} if eos is not None else set())
    if fast and _fast_applies(model, do_sample, positions, operator, stop):
        new_ids = greedy_tokens(
            model,
            enc,
            vector,
            s,
            layers,
            relative=relative,
            force=force,
            max_new_tokens=max_new_tokens,
            stop_ids=finish_ids,
            pad_id=pad_id,
            progress=progress,
        )
        return [_finish(tokenizer, t, finish_ids, pad_id, stop, max_new_tokens) for t in new_ids]
    order = sorted(range(n), key=lambda i: -len(enc[i]))
    dev = model_device(model)
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


# Generation settings under which model.generate's greedy search is not a plain argmax of the logits.
_PROCESSORS = (
    "repetition_penalty",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "bad_words_ids",
    "min_length",
    "min_new_tokens",
    "suppress_tokens",
    "begin_suppress_tokens",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "sequence_bias",
    "exponential_decay_length_penalty",
    "renormalize_logits",
    "watermarking_config",
    "guidance_scale",
)


def _fast_applies(model: Any, do_sample: bool, positions: str, operator: str, stop: Sequence[Stop]) -> bool:
    """The fast greedy loop covers greedy decoding of every position with the add operator, no stop rules,
    and a model whose generation config adds no logits processor; anything else runs model.generate."""
    if do_sample or positions != "all" or operator != "add" or stop:
        return False
    gc = getattr(model, "generation_config", None)
    for k in _PROCESSORS:
        v = getattr(gc, k, None)
        if v not in (None, 0, 1.0, False, [], ()) and not (k == "min_length" and v == 0):
            return False
    return True


def auto_rows(model: Any, max_len: int, cap: int | None = None) -> int:
    """How many rows of ``max_len`` tokens fit a generation batch: half the free memory (GPU: the device's,
    CPU: the machine's available RAM) over one row's KV cache and activations, at most ``cap``
    (default 256 on CPU, where larger batches stop paying, 4096 on GPU)."""
    cfg = model.config
    text = getattr(cfg, "text_config", None) or cfg
    layers = int(getattr(text, "num_hidden_layers", 32))
    heads = int(getattr(text, "num_attention_heads", 32))
    hidden = int(getattr(text, "hidden_size", 4096))
    kv = int(getattr(text, "num_key_value_heads", None) or heads)
    hd = int(getattr(text, "head_dim", None) or hidden // heads)
    inter = int(getattr(text, "intermediate_size", 4 * hidden))
    p = next(model.parameters())
    nbytes = p.element_size()
    per_row = nbytes * max_len * (2 * layers * kv * hd + 2 * hidden + inter)
    if p.device.type == "cuda":
        free = torch.cuda.mem_get_info(p.device)[0]
        cap = cap or 4096
    else:
        import psutil

        free = psutil.virtual_memory().available
        cap = cap or 256
    return max(1, min(cap, int(0.5 * free // max(per_row, 1))))


def greedy_tokens(
    model: Any,
    enc: Sequence[list[int]],
    vector: Any,
    strength: Any,
    layers: Any = None,
    *,
    relative: bool = False,
    force: bool = False,
    max_new_tokens: int = 64,
    stop_ids: set[int],
    pad_id: int = 0,
    max_rows: int | None = None,
    progress: bool = False,
) -> list[list[int]]:
    """Greedy new token ids per row, the same tokens ``model.generate`` picks (argmax of float32 logits),
    faster (see :func:`generate_detailed`): rows with the same prompt at several
    strengths share one pass of the blocks below the first steered layer over the prompt
    (:func:`~steertax.interventions.steering.hooks.shared_trunk`); a batch holds as many rows as free memory allows
    (:func:`auto_rows`); rows that finished (a ``stop_ids`` token) leave the batch."""

    keep: dict[str, Any] = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}

    n = len(enc)
    s0 = check_strength(strength)
    st = s0.to(torch.float32) if isinstance(s0, torch.Tensor) else torch.full((n,), float(s0))
    if vector is None:
        st = torch.zeros(n)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, e in enumerate(enc):
        groups.setdefault(tuple(e), []).append(i)
    plist = sorted(groups.items(), key=lambda kv: (-len(kv[0]), len(kv[1])))
    steered = vector is not None and bool((st != 0).any())
    first = trunk_layer(model, vector, layers) if steered else None
    rows_cap = max_rows or auto_rows(model, max(len(e) for e in enc) + max_new_tokens)
    batches: list[list[tuple[tuple[int, ...], list[int]]]] = []
    for item in plist:  # longest prompts first; a batch grows while it fits memory and pads at most a quarter of its tokens
        b = batches[-1] if batches else None
        if b is not None and len(b[0][1]) == len(item[1]):
            k, longest = len(item[1]), len(b[0][0])
            real = sum(len(p) for p, _ in b) + len(item[0])
            if (len(b) + 1) * k <= rows_cap and (len(b) + 1) * longest <= 1.25 * real:
                b.append(item)
                continue
        batches.append([item])
    dev = model_device(model)
    stop_t = torch.as_tensor(sorted(stop_ids) or [-1], device=dev)
    out: list[list[int]] = [[] for _ in range(n)]
    bar = tqdm(total=n, desc="generate", unit="row", disable=not progress, leave=False)
    for batch in batches:
        K, B = len(batch[0][1]), len(batch)
        rows = torch.as_tensor([i for _, r in batch for i in r])
        srow = st[rows]
        ids, mask = pad_batch([list(p) for p, _ in batch], pad_id, "left", dev)

        def ctx(rs: torch.Tensor) -> Any:
            return (
                steer(model, vector, rs, layers, relative=relative, force=force)
                if steered and bool((rs != 0).any())
                else contextlib.nullcontext()
            )

        with torch.inference_mode():
            if first is not None and K > 1:
                with ctx(srow), shared_trunk(model, first, K):
                    o = forward(model, ids, mask, use_cache=True, **keep)
                cache = index_cache(output_cache(o), torch.arange(B).repeat_interleave(K), torch.arange(B * K), first)
                mask = mask.repeat_interleave(K, 0)
            else:
                mask = mask.repeat_interleave(K, 0)
                with ctx(srow):
                    o = forward(model, ids.repeat_interleave(K, 0), mask, use_cache=True, **keep)
                cache = output_cache(o)
            logits = o.logits[:, -1]
            srow_d = srow.to(dev)
            toks = torch.full((B * K, max_new_tokens), -1, dtype=torch.long, device=dev)  # -1: no token (finished earlier)
            active = torch.arange(B * K, device=dev)  # slots of this batch still in it
            done = torch.zeros(B * K, dtype=torch.bool, device=dev)
            pos = mask.sum(-1)
            hooks = contextlib.ExitStack()  # the steering hooks stay for the whole batch; re-registered when rows leave
            hooks.enter_context(ctx(srow_d))
            try:
                for t in range(max_new_tokens):
                    nxt = logits.to(torch.float32).argmax(-1)
                    toks[active[~done], t] = nxt[~done]
                    done = done | torch.isin(nxt, stop_t)
                    n_done = int(done.sum())  # the one device sync per step
                    if t == max_new_tokens - 1 or n_done == len(active):
                        break
                    if n_done >= max(1, len(active) // 8):  # finished rows leave the batch
                        live = (~done).nonzero().squeeze(1)
                        cache = index_cache(cache, live)
                        mask, pos, nxt, active, done = mask[live], pos[live], nxt[live], active[live], done[live]
                        hooks.close()
                        hooks = contextlib.ExitStack()
                        hooks.enter_context(ctx(srow_d[active]))
                    mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                    kw: dict[str, Any] = {"use_cache": True, cache_arg(model): cache}
                    if _accepts_pos(model):
                        kw["position_ids"] = pos.unsqueeze(1)
                    o = model(input_ids=nxt.unsqueeze(1), attention_mask=mask, **kw)
                    cache, logits, pos = output_cache(o), o.logits[:, -1], pos + 1
            finally:
                hooks.close()
        for slot, row in enumerate(toks.tolist()):
            out[int(rows[slot])] = [x for x in row if x >= 0]
        bar.update(B * K)
    bar.close()
    return out


def _accepts_pos(model: Any) -> bool:

    return accepts_position_ids(model)


def _generate_vllm(
    model: Any,
    tokenizer: Any,
    enc: list[list[int]],
    vector: Any,
    s: Any,
    layers: Any,
    backend: str,
    positions: str,
    operator: str,
    relative: bool,
    force: bool,
    stop: Sequence[Stop],
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    seed: int,
) -> list[Generation]:
    """The same generation on vLLM (see :mod:`steertax.vllm_backend`): same prompts' token ids, same cut."""

    if backend != "vllm":
        raise ConfigError(f"unknown backend {backend!r}: use hf or vllm")
    if vector is not None and (positions != "all" or operator != "add"):
        raise ConfigError(
            f"backend 'vllm' steers every position with operator 'add' (got positions={positions!r}, operator={operator!r}): use backend hf"
        )
    n = len(enc)
    per_row = [float(x) for x in s.tolist()] if isinstance(s, torch.Tensor) else [float(s)] * n
    if vector is None:
        per_row = [0.0] * n
        dirs: dict[int, torch.Tensor] = {}
    else:
        _, dirs = steering_directions(model, vector, layers, force)
    dtype = next(model.parameters()).dtype

    def deltas_for(st: float) -> dict[int, torch.Tensor]:
        per_layer = layer_strengths(vector, list(dirs), st, relative)
        out = {}
        for i, d in dirs.items():
            v = d.detach().to(torch.float32)
            v = v / v.norm()
            wide = torch.promote_types(dtype, torch.float32)
            out[i] = (float(per_layer[i]) * v.to(wide)).to(dtype).cpu()  # r·v̂ rounded once, as the HF hook does
        return out

    eos = tokenizer.eos_token_id
    finish_ids = _eos_ids(model, tokenizer) | ({int(eos)} if eos is not None else set())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    new = generate_tokens(
        model,
        enc,
        deltas_for,
        per_row,
        max_new_tokens=max_new_tokens,
        finish_ids=finish_ids,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
    )
    return [_finish(tokenizer, t, finish_ids, pad_id, stop, max_new_tokens) for t in new]


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
