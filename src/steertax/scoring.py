"""Exact log-probabilities of whole continuations under steering, batched across prompts,
continuations and per-row strengths."""
from __future__ import annotations

import contextlib
import inspect
from typing import Any, Sequence

import torch

from .activations import _model_device, forward, pad_batch
from .models import encode
from .steering import check_strength, steer

__all__ = ["continuation_logprobs", "encode_continuation"]


def encode_continuation(tokenizer: Any, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"continuation {text!r} has no tokens")
    return list(ids)


_KEEP: dict[type, bool] = {}


def _accepts_logits_to_keep(model: Any) -> bool:
    t = type(model)
    if t not in _KEEP:
        try:
            _KEEP[t] = "logits_to_keep" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            _KEEP[t] = False
    return _KEEP[t]


def continuation_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    continuations: Sequence[Sequence[str]] | Sequence[str],
    vector: Any = None,
    strength: float | Sequence[float] | torch.Tensor = 0.0,
    layers: Any = None,
    *,
    batch_size: int = 32,
    positions: str = "all",
    force: bool = False,
) -> torch.Tensor:
    """``out[i, j] = log P(continuations[i][j] | prompts[i])`` summed over the continuation's tokens.

    ``prompts`` are full prompt texts (already chat-formatted). ``continuations`` is one list shared
    by all prompts or one list per prompt (same length each). ``strength`` is one value, or one per
    prompt. All (prompt, continuation) sequences are left-padded into batches so the continuations sit
    at the end and only their logits are projected.
    """
    n = len(prompts)
    if n and continuations and isinstance(continuations[0], str):
        conts = [list(continuations)] * n  # type: ignore[list-item]
    else:
        conts = [list(c) for c in continuations]  # type: ignore[arg-type]
    if len(conts) != n:
        raise ValueError(f"{len(conts)} continuation lists for {n} prompts")
    k = len(conts[0]) if conts else 0
    if any(len(c) != k for c in conts):
        raise ValueError("every prompt needs the same number of continuations")
    s = check_strength(strength)
    if isinstance(s, torch.Tensor) and s.numel() != n:
        raise ValueError(f"got {s.numel()} strengths for {n} prompts")
    penc = [encode(tokenizer, p) for p in prompts]
    cenc_cache: dict[str, list[int]] = {}
    rows: list[tuple[int, int, list[int], int]] = []  # (prompt i, cont j, ids, cont len)
    for i in range(n):
        for j, c in enumerate(conts[i]):
            if c not in cenc_cache:
                cenc_cache[c] = encode_continuation(tokenizer, c)
            ce = cenc_cache[c]
            rows.append((i, j, penc[i] + ce, len(ce)))
    order = sorted(range(len(rows)), key=lambda r: len(rows[r][2]))
    out = torch.empty(n, k, dtype=torch.float64)
    dev = _model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    keep_ok = _accepts_logits_to_keep(model)
    for b0 in range(0, len(order), batch_size):
        bidx = order[b0:b0 + batch_size]
        batch = [rows[r] for r in bidx]
        ids, mask = pad_batch([b[2] for b in batch], pad_id, "left", dev)
        L = max(b[3] for b in batch)
        kw: dict[str, Any] = {"use_cache": False}
        if keep_ok:
            kw["logits_to_keep"] = L + 1
        if vector is None:
            ctx: Any = contextlib.nullcontext()
        else:
            st = s[torch.as_tensor([b[0] for b in batch])] if isinstance(s, torch.Tensor) else s
            ctx = steer(model, vector, st, layers, positions=positions, force=force)
        with ctx, torch.inference_mode():
            logits = forward(model, ids, mask, **kw).logits
        logits = logits[:, -(L + 1):-1].float()  # predictions for the last L tokens
        logp = torch.log_softmax(logits, dim=-1)
        tgt = ids[:, -L:]
        tok_lp = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)  # [B, L]
        lens = torch.as_tensor([b[3] for b in batch], device=tok_lp.device)
        valid = torch.arange(L, device=tok_lp.device).unsqueeze(0) >= (L - lens).unsqueeze(1)
        tot = (tok_lp * valid).sum(-1).double().cpu()
        for r, b in enumerate(batch):
            out[b[0], b[1]] = tot[r]
    return out
