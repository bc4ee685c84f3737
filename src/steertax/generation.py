"""Batched, left-padded generation under steering (greedy by default, seeded sampling optional)."""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from .activations import _model_device, pad_batch
from .models import encode, format_chat
from .steering import Operator, Positions, check_strength, steer

__all__ = ["generate"]


def generate(
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
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = False,
    force: bool = False,
) -> list[str]:
    """Generate answers for ``prompts`` (user messages, chat-formatted unless ``chat=False``).

    ``strength`` is one value for all prompts or one per prompt (rows with different strengths share
    batches). Without ``vector`` the model runs unsteered. Returns the decoded new text per prompt.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    n = len(prompts)
    s = check_strength(strength)
    if isinstance(s, torch.Tensor) and s.numel() != n:
        raise ValueError(f"got {s.numel()} strengths for {n} prompts: give one strength, or one per prompt")
    texts = [format_chat(tokenizer, p, system=system, chat=chat) for p in prompts]
    enc = [encode(tokenizer, t) for t in texts]
    order = sorted(range(n), key=lambda i: -len(enc[i]))
    dev = _model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = tokenizer.eos_token_id
    out: list[str] = [""] * n
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
        if do_sample:
            torch.manual_seed(seed + b0)
        with ctx, torch.inference_mode():
            res = model.generate(input_ids=ids, attention_mask=mask, **gen_kw)
        new = res[:, ids.shape[1] :]
        for row, i in enumerate(idx):
            out[i] = tokenizer.decode(new[row], skip_special_tokens=True)
        bar.update(len(idx))
    bar.close()
    return out
