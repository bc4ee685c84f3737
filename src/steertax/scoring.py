"""Exact scoring primitives under steering, batched across items, continuations and strengths.

- :func:`score_sequences`: log P(continuation | prompt) for many continuations per prompt, with the
  prompt's KV cache shared by its continuations (prefix sharing), one row per (prompt, strength).
- :func:`next_token_logprobs`: the next-token log-distribution at the end of each prompt, reduced to
  requested token ids (plus the full-vocabulary argmax).
- :func:`drift`: KL(steered || unsteered) of next-token distributions along a reference answer, and
  the answer's cross-entropy under the steered model.

Strengths are applied per row, so one forward pass evaluates many strengths.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence, cast

import numpy as np
import torch
from tqdm.auto import tqdm

from steertax.interventions.steering.activations import (
    accepts_position_ids,
    cache_arg,
    forward,
    model_device,
    output_cache,
    pad_batch,
    transformers_version,
)
from steertax.interventions.steering.hooks import check_strength, shared_trunk, steer, trunk_layer
from steertax.models import encode

__all__ = [
    "score_sequences",
    "continuation_logprobs",
    "answer_token_logprob",
    "next_token_logprobs",
    "drift",
    "encode_continuation",
    "SequenceScores",
]


def encode_continuation(tokenizer: Any, text: str) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"continuation {text!r} has no tokens")
    return list(ids)


_KEEP: dict[type, bool] = {}


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether ``model.forward`` takes ``logits_to_keep`` (detected once per model class)."""
    t = type(model)
    if t not in _KEEP:
        try:
            _KEEP[t] = "logits_to_keep" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            _KEEP[t] = False
    return _KEEP[t]


def _ctx(model: Any, vector: Any, strengths: torch.Tensor, layers: Any, force: bool, first: int | None = None, repeats: int = 1) -> Any:
    """Steering for one forward pass: per-row ``strengths``; with ``first`` the rows are the inputs
    fanned out ``repeats`` times at block ``first`` (shared trunk), so strengths count the fanned rows."""
    if first is not None:
        stack = contextlib.ExitStack()
        stack.enter_context(steer(model, vector, strengths, layers, force=force))
        stack.enter_context(shared_trunk(model, first, repeats))
        return stack
    if vector is None:
        return contextlib.nullcontext()
    if bool((strengths == 0).all()):
        # exact identity: r_e = 0 is the unsteered model (adding 0 changes nothing; skip the hooks)
        return contextlib.nullcontext()
    return steer(model, vector, strengths, layers, force=force)


@dataclass
class SequenceScores:
    """``logprob[i, s, j]``: summed log-probability of continuation j of prompt i at strength s
    (NaN where prompt i has fewer continuations); ``ntokens[i, j]``, ``nchars[i, j]`` its lengths."""

    logprob: np.ndarray
    ntokens: np.ndarray
    nchars: np.ndarray


def index_cache(cache: Any, index: torch.Tensor, upper_index: torch.Tensor | None = None, first_layer: int = 0) -> Any:
    """Reorder/repeat the batch rows of a KV cache in place: layers below ``first_layer`` take rows
    ``index``, the others ``upper_index`` (default ``index``). With a shared trunk the layers below the
    first steered layer hold one row per item and the layers above one row per (item, strength)."""
    up = index if upper_index is None else upper_index

    def pick(li: int, t: torch.Tensor) -> torch.Tensor:
        idx = index if li < first_layer else up
        return t.index_select(0, idx.to(t.device))

    if hasattr(cache, "layers") and cache.layers and hasattr(cache.layers[0], "keys"):
        for li, layer in enumerate(cache.layers):
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys = pick(li, layer.keys)
                layer.values = pick(li, layer.values)
        return cache
    if hasattr(cache, "key_cache"):
        cache.key_cache = [pick(li, k) for li, k in enumerate(cache.key_cache)]
        cache.value_cache = [pick(li, v) for li, v in enumerate(cache.value_cache)]
        return cache
    raise TypeError(f"cannot reindex a cache of type {type(cache).__name__}")


def _expand_cache(cache: Any, repeats: torch.Tensor) -> Any:
    """Repeat each batch row of a KV cache ``repeats[b]`` times (rows with different counts)."""
    return index_cache(cache, torch.repeat_interleave(torch.arange(len(repeats)), repeats.cpu()))


def _trunk_plan(model: Any, vector: Any, layers: Any, S: Sequence[float], trunk: bool) -> int | None:
    """The first steered layer when a shared trunk applies (a vector, several strengths), else None."""
    if not trunk or vector is None or len(S) < 2 or all(s == 0 for s in S):
        return None
    return trunk_layer(model, vector, layers)


def score_sequences(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    strengths: Sequence[float] = (0.0,),
    vector: Any = None,
    layers: Any = None,
    *,
    batch_size: int = 32,
    force: bool = False,
    prefix_sharing: bool = True,
    trunk: bool = True,
    progress: bool = False,
    desc: str = "score",
) -> SequenceScores:
    """Log-probabilities of whole continuations for every prompt at every strength.

    ``prompts`` are full prompt texts (chat-formatted already). With ``prefix_sharing`` the prompt is
    encoded once per (prompt, strength) row and its KV cache is expanded over the continuations;
    otherwise each (prompt + continuation) sequence is run whole (the reference path; the two agree
    to float tolerance, which the tests check). With ``trunk`` (and prefix sharing, a vector and
    several strengths) the blocks below the first steered layer run once per prompt and once per
    continuation token, not once per strength (:func:`~steertax.interventions.steering.hooks.shared_trunk`); then
    ``batch_size`` counts (prompt, strength) rows of the steered tail.
    """
    n = len(prompts)
    S = [float(check_strength(s)) for s in strengths]
    conts = [list(c) for c in continuations]
    if len(conts) != n:
        raise ValueError(f"{len(conts)} continuation lists for {n} prompts")
    C = max((len(c) for c in conts), default=0)
    lp = np.full((n, len(S), C), np.nan)
    ntok = np.zeros((n, C), dtype=np.int64)
    nch = np.zeros((n, C), dtype=np.int64)
    cenc: dict[str, list[int]] = {}
    for i, cs in enumerate(conts):
        for j, c in enumerate(cs):
            if c not in cenc:
                cenc[c] = encode_continuation(tokenizer, c)
            ntok[i, j] = len(cenc[c])
            nch[i, j] = len(c.encode("utf-8"))
    penc = [encode(tokenizer, p) for p in prompts]
    dev = model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # rows = (prompt, strength); sorted by prompt length for tight batches
    rows = [(i, s) for i in range(n) for s in range(len(S))]
    rows.sort(key=lambda r: (len(penc[r[0]]), r[0], r[1]))
    bar = tqdm(total=n * len(S), desc=desc, unit="row", disable=not progress, leave=False)
    keep_ok = accepts_logits_to_keep(model)
    first = _trunk_plan(model, vector, layers, S, trunk) if prefix_sharing else None
    if first is not None:
        order = sorted(range(n), key=lambda i: (len(penc[i]), i))
        per_items = max(1, batch_size // len(S))
        for b0 in range(0, n, per_items):
            items = order[b0 : b0 + per_items]
            _score_trunk(model, penc, conts, cenc, items, S, vector, layers, force, pad_id, dev, keep_ok, lp, first)
            bar.update(len(items) * len(S))
        bar.close()
        return SequenceScores(lp, ntok, nch)
    # rows = (prompt, strength); sorted by prompt length for tight batches
    rows = [(i, s) for i in range(n) for s in range(len(S))]
    rows.sort(key=lambda r: (len(penc[r[0]]), r[0], r[1]))
    per_batch = max(1, batch_size // max(1, C))
    for b0 in range(0, len(rows), per_batch):
        batch = rows[b0 : b0 + per_batch]
        st = torch.as_tensor([S[s] for _, s in batch], dtype=torch.float32)
        if prefix_sharing:
            _score_shared(model, penc, conts, cenc, batch, st, vector, layers, force, pad_id, dev, keep_ok, lp)
        else:
            _score_packed(model, penc, conts, cenc, batch, st, vector, layers, force, pad_id, dev, keep_ok, lp)
        bar.update(len(batch))
    bar.close()
    return SequenceScores(lp, ntok, nch)


@contextlib.contextmanager
def head_at(model: Any, flat_index: torch.Tensor | None):
    """Project the LM head only at some positions: ``flat_index`` indexes the flattened (row, position)
    grid of the head's input, and the logits come out as ``[1, len(flat_index), V]``. Whatever the
    model does after its head (e.g. Gemma's soft-capping) is elementwise and still applies."""
    head = model.get_output_embeddings() if flat_index is not None and hasattr(model, "get_output_embeddings") else None
    if head is None or flat_index is None:  # (head is None whenever flat_index is)
        yield False
        return

    def pre(module: Any, args: Any) -> Any:
        h = args[0]
        return (h.reshape(-1, h.shape[-1]).index_select(0, flat_index.to(h.device)).unsqueeze(0),) + tuple(args[1:])

    hk = head.register_forward_pre_hook(pre)
    try:
        yield True
    finally:
        hk.remove()


def _wide(logits: torch.Tensor) -> torch.Tensor:
    """Logits in at least float32 (half precision is upcast; float64 models keep float64)."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[..., targets] without materializing the full log-softmax."""
    logits = _wide(logits)
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


# Pack every continuation of a prompt row into one row (each continuation attends to the prompt and to its own
# earlier tokens, through a 4D mask): no padding between continuations of unequal length and no copy of the
# prompt's KV cache per continuation. Off (PACK = False) reverts to one row per continuation (the tests compare).
PACK = True


def _packable(model: Any, kv_len: int) -> bool:
    """Custom 4D masks: transformers >= 4.53 (masking_utils returns them as given), an attention kernel that takes
    an explicit mask (eager, sdpa), and no sliding window shorter than the rows."""

    if not PACK or transformers_version() < (4, 53):
        return False
    cfg = getattr(model, "config", None)
    text = cfg.get_text_config() if cfg is not None and hasattr(cfg, "get_text_config") else cfg
    if getattr(cfg, "_attn_implementation", "sdpa") not in ("sdpa", "eager"):
        return False
    win = getattr(text, "sliding_window", None)
    return not (isinstance(win, int) and win < kv_len)


def _pack(row_conts: list[list[list[int]]], plen: torch.Tensor, pmask: torch.Tensor, pad_id: int, dtype: torch.dtype) -> Any:
    """One packed row per prompt row: the continuations' tokens but their last (inputs), the next tokens
    (targets), positions after the prompt's real length, each token's continuation index, and the additive 4D
    mask [R, 1, M, P + M] (0 = attend). Returns None when no continuation has a second token."""
    R = len(row_conts)
    M = max(sum(len(c) - 1 for c in cs) for cs in row_conts)
    if M == 0:
        return None
    dev = pmask.device
    ids = torch.full((R, M), pad_id, dtype=torch.long)
    tgt = torch.full((R, M), pad_id, dtype=torch.long)
    pos = torch.zeros((R, M), dtype=torch.long)
    seg = torch.full((R, M), -1, dtype=torch.long)
    tpos = torch.zeros((R, M), dtype=torch.long)
    for r, cs in enumerate(row_conts):
        o, p0 = 0, int(plen[r])
        for j, c in enumerate(cs):
            n = len(c) - 1
            if n > 0:
                ids[r, o : o + n] = torch.as_tensor(c[:-1])
                tgt[r, o : o + n] = torch.as_tensor(c[1:])
                pos[r, o : o + n] = p0 + torch.arange(n)
                seg[r, o : o + n] = j
                tpos[r, o : o + n] = torch.arange(n)
                o += n
    real = seg >= 0
    own = (seg[:, :, None] == seg[:, None, :]) & (tpos[:, None, :] <= tpos[:, :, None]) & real[:, :, None]
    own |= torch.eye(M, dtype=torch.bool)[None]  # a padding position attends to itself (no empty softmax row)
    allowed = torch.cat([pmask.bool().cpu()[:, None, :] & real[:, :, None], own], dim=-1)
    mask4 = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]
    return ids.to(dev), tgt.to(dev), pos.to(dev), seg.to(dev), real.to(dev), mask4.to(dev)


def _packed_pass(model: Any, cache: Any, pmask: torch.Tensor, row_conts: list[list[list[int]]], ctx: Any, pad_id: int, K: int) -> Any:
    """The packed continuation pass over a prompt cache of R rows (``K`` > 1: a shared trunk fans each row out
    K times above the first steered layer; ``ctx`` sets that up). Returns rest[R*K, C]: each continuation's
    summed log-probability of its tokens after the first (0 for one-token continuations)."""
    C = max(len(cs) for cs in row_conts)
    R = len(row_conts)
    dtype = next(model.parameters()).dtype
    plen = pmask.sum(-1)
    packed = _pack(row_conts, plen, pmask, pad_id, dtype)
    rest = torch.zeros((R * K, C), dtype=torch.float64, device=pmask.device)
    if packed is None:
        return rest
    ids, tgt, pos, seg, real, mask4 = packed
    realK = real.repeat_interleave(K, dim=0)
    flat = realK.reshape(-1).nonzero().squeeze(1)
    kw: dict[str, Any] = {"use_cache": True, cache_arg(model): cache}
    if accepts_position_ids(model):
        kw["position_ids"] = pos
    with ctx, torch.inference_mode(), head_at(model, flat) as sliced:
        out = model(input_ids=ids, attention_mask=mask4, **kw)
    tgtK, segK = tgt.repeat_interleave(K, dim=0), seg.repeat_interleave(K, dim=0)
    if sliced:
        tok = _token_logprobs(out.logits[0], tgtK[realK]).double()
    else:
        tok = _token_logprobs(out.logits, tgtK)[realK].double()
    row = torch.arange(R * K, device=ids.device).unsqueeze(1).expand_as(segK)[realK]
    rest.view(-1).scatter_add_(0, row * C + segK[realK], tok)
    return rest


def _score_trunk(model, penc, conts, cenc, items, S, vector, layers, force, pad_id, dev, keep_ok, lp, first) -> None:
    """Prefix sharing plus a shared trunk: rows of the steered tail are (item, strength) for the
    prompt and (item, continuation, strength) for the continuation tokens."""
    K, B = len(S), len(items)
    st = torch.as_tensor(S, dtype=torch.float32)
    ids, mask = pad_batch([penc[i] for i in items], pad_id, "left", dev)
    kw: dict[str, Any] = {"use_cache": True}
    if keep_ok:
        kw["logits_to_keep"] = 1
    with torch.inference_mode():
        with _ctx(model, vector, st.repeat(B), layers, force, first, K):
            out = forward(model, ids, mask, **kw)
        counts = torch.as_tensor([len(conts[i]) for i in items])
        seqs = [cenc[c] for i in items for c in conts[i]]
        if not seqs:
            return
        R = len(seqs)
        owner = torch.repeat_interleave(torch.arange(B), counts)  # continuation row -> item row
        tail = ((owner * K).unsqueeze(1) + torch.arange(K).unsqueeze(0)).reshape(-1)  # (row, strength) -> tail row
        L = max(len(x) for x in seqs)
        cid = torch.full((R, L), pad_id, dtype=torch.long)
        cmask = torch.zeros((R, L), dtype=torch.long)
        for r, x in enumerate(seqs):
            cid[r, : len(x)] = torch.as_tensor(x)
            cmask[r, : len(x)] = 1
        cid, cmask, owner_d, tail_d = cid.to(dev), cmask.to(dev), owner.to(dev), tail.to(dev)
        if _packable(model, ids.shape[1] + sum(len(x) for x in seqs)):
            first_lp = _token_logprobs(out.logits[:, -1][tail_d], cid[:, 0].repeat_interleave(K)).double()  # [R*K]
            row_conts = [[cenc[c] for c in conts[i]] for i in items]
            ctx = _ctx(model, vector, st.repeat(B), layers, force, first, K)
            rest = _packed_pass(model, output_cache(out), mask, row_conts, ctx, pad_id, K)  # [B*K, C]
            jj = torch.cat([torch.arange(int(n)) for n in counts]).to(dev)  # continuation index of each continuation row
            tot = (first_lp.view(R, K) + rest.view(B, K, -1)[owner_d, :, jj]).cpu().numpy()
        else:
            tot = _trunk_rows(model, out, mask, cid, cmask, owner_d, tail_d, R, K, L, st, vector, layers, force, first, dev)
    r = 0
    for i in items:
        for j in range(len(conts[i])):
            lp[i, :, j] = tot[r]
            r += 1


def _trunk_rows(model, out, mask, cid, cmask, owner_d, tail_d, R, K, L, st, vector, layers, force, first, dev) -> Any:
    """One row per (continuation, strength) over a copy of the prompt's cache (the path before packing)."""
    with torch.inference_mode():
        tok_lp = torch.zeros((R * K, L), dtype=torch.float64, device=dev)
        tok_lp[:, 0] = _token_logprobs(out.logits[:, -1][tail_d], cid[:, 0].repeat_interleave(K)).double()
        if L > 1:
            cache = index_cache(output_cache(out), owner_d, tail_d, first)
            full_mask = torch.cat([mask[owner_d], cmask[:, :-1]], dim=1)
            pos = mask.sum(-1)[owner_d].unsqueeze(1) + torch.arange(L - 1, device=dev).unsqueeze(0)
            kw2: dict[str, Any] = {"use_cache": True, cache_arg(model): cache}
            if accepts_position_ids(model):
                kw2["position_ids"] = pos
            valid = cmask[:, 1:].repeat_interleave(K, dim=0).bool()  # [R*K, L-1]: positions that are scored
            flat = valid.reshape(-1).nonzero().squeeze(1)
            with _ctx(model, vector, st.repeat(R), layers, force, first, K), head_at(model, flat) as sliced:
                out2 = model(input_ids=cid[:, :-1], attention_mask=full_mask, **kw2)
            tgt = cid[:, 1:].repeat_interleave(K, dim=0)
            if sliced:
                rest = tok_lp[:, 1:]
                rest[valid] = _token_logprobs(out2.logits[0], tgt[valid]).double()
            else:
                tok_lp[:, 1:] = _token_logprobs(out2.logits, tgt).double()
        tok_lp = tok_lp * cmask.repeat_interleave(K, dim=0)
        tot = tok_lp.sum(-1).view(R, K).cpu().numpy()
    return tot


def _score_shared(model, penc, conts, cenc, batch, st, vector, layers, force, pad_id, dev, keep_ok, lp) -> None:
    ids, mask = pad_batch([penc[i] for i, _ in batch], pad_id, "left", dev)
    kw: dict[str, Any] = {"use_cache": True}
    if keep_ok:
        kw["logits_to_keep"] = 1
    with _ctx(model, vector, st, layers, force), torch.inference_mode():
        out = forward(model, ids, mask, **kw)
    first_lp = torch.log_softmax(_wide(out.logits[:, -1]), dim=-1)  # [B, V]
    cache = output_cache(out)
    counts = torch.as_tensor([len(conts[i]) for i, _ in batch])
    seqs = [cenc[c] for i, _ in batch for c in conts[i]]
    if not seqs:
        return
    owner = torch.repeat_interleave(torch.arange(len(batch)), counts)
    L = max(len(s) for s in seqs)
    # continuation tokens, right-padded after the (left-padded) prompt block
    cid = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    cmask = torch.zeros((len(seqs), L), dtype=torch.long)
    for r, s in enumerate(seqs):
        cid[r, : len(s)] = torch.as_tensor(s)
        cmask[r, : len(s)] = 1
    cid, cmask = cid.to(dev), cmask.to(dev)
    tok_lp = torch.zeros((len(seqs), L), dtype=torch.float64, device=dev)
    tok_lp[:, 0] = first_lp[owner.to(dev), cid[:, 0]].double()
    if L > 1 and _packable(model, ids.shape[1] + max(sum(len(cenc[c]) for c in conts[i]) for i, _ in batch)):
        row_conts = [[cenc[c] for c in conts[i]] for i, _ in batch]
        rest = _packed_pass(model, cache, mask, row_conts, _ctx(model, vector, st, layers, force), pad_id, 1)  # [B, C]
        jj = torch.cat([torch.arange(int(n)) for n in counts]).to(dev)
        tot = (tok_lp[:, 0] + rest[owner.to(dev), jj]).cpu().numpy()
    else:
        if L > 1:
            cache = _expand_cache(cache, counts.to(dev))
            full_mask = torch.cat([mask[owner.to(dev)], cmask[:, :-1]], dim=1)
            plen = mask.sum(-1)[owner.to(dev)]
            pos = plen.unsqueeze(1) + torch.arange(L - 1, device=dev).unsqueeze(0)
            kw2: dict[str, Any] = {"use_cache": True, cache_arg(model): cache}
            if accepts_position_ids(model):
                kw2["position_ids"] = pos
            valid = cmask[:, 1:].bool()
            flat = valid.reshape(-1).nonzero().squeeze(1)
            with _ctx(model, vector, st[owner], layers, force), torch.inference_mode(), head_at(model, flat) as sliced:
                out2 = model(input_ids=cid[:, :-1], attention_mask=full_mask, **kw2)
            if sliced:
                rest = tok_lp[:, 1:]
                rest[valid] = _token_logprobs(out2.logits[0], cid[:, 1:][valid]).double()
            else:
                tok_lp[:, 1:] = _token_logprobs(out2.logits, cid[:, 1:]).double()
        tok_lp = tok_lp * cmask
        tot = tok_lp.sum(-1).cpu().numpy()
    r = 0
    for i, s in batch:
        for j in range(len(conts[i])):
            lp[i, s, j] = tot[r]
            r += 1


def _score_packed(model, penc, conts, cenc, batch, st, vector, layers, force, pad_id, dev, keep_ok, lp) -> None:
    seqs, owners, lens, where = [], [], [], []
    for b, (i, s) in enumerate(batch):
        for j, c in enumerate(conts[i]):
            ce = cenc[c]
            seqs.append(penc[i] + ce)
            owners.append(b)
            lens.append(len(ce))
            where.append((i, s, j))
    if not seqs:
        return
    ids, mask = pad_batch(seqs, pad_id, "left", dev)
    L = max(lens)
    kw: dict[str, Any] = {"use_cache": False}
    if keep_ok:
        kw["logits_to_keep"] = L + 1
    with _ctx(model, vector, st[torch.as_tensor(owners)], layers, force), torch.inference_mode():
        logits = forward(model, ids, mask, **kw).logits
    logp = torch.log_softmax(_wide(logits[:, -(L + 1) : -1]), dim=-1)
    tok = logp.gather(-1, ids[:, -L:].unsqueeze(-1)).squeeze(-1)
    lens_t = torch.as_tensor(lens, device=tok.device)
    valid = torch.arange(L, device=tok.device).unsqueeze(0) >= (L - lens_t).unsqueeze(1)
    tot = (tok.double() * valid).sum(-1).cpu().numpy()
    for r, (i, s, j) in enumerate(where):
        lp[i, s, j] = tot[r]


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
    force: bool = False,
    prefix_sharing: bool = True,
) -> torch.Tensor:
    """``out[i, j] = log P(continuations[i][j] | prompts[i])`` with one strength, or one per prompt."""
    n = len(prompts)
    if n and continuations and isinstance(continuations[0], str):
        conts = [list(cast(Sequence[str], continuations))] * n
    else:
        conts = [list(c) for c in continuations]
    s = check_strength(strength)
    if isinstance(s, torch.Tensor):
        if s.numel() != n:
            raise ValueError(f"got {s.numel()} strengths for {n} prompts")
        out = torch.empty(n, len(conts[0]), dtype=torch.float64)
        uniq = sorted(set(s.tolist()))
        res = score_sequences(
            model, tokenizer, prompts, conts, uniq, vector, layers, batch_size=batch_size, force=force, prefix_sharing=prefix_sharing
        )
        for i in range(n):
            out[i] = torch.from_numpy(res.logprob[i, uniq.index(float(s[i]))])
        return out
    res = score_sequences(
        model, tokenizer, prompts, conts, [s], vector, layers, batch_size=batch_size, force=force, prefix_sharing=prefix_sharing
    )
    return torch.from_numpy(res.logprob[:, 0])


def answer_token_logprob(
    model: Any, tokenizer: Any, prompts: Sequence[str], answers: Sequence[str], *, batch_size: int = 32, force: bool = False
) -> np.ndarray:
    """Each answer's mean token log-probability given its (formatted) prompt under ``model`` as it is (no steering):
    −log of its perplexity; NaN for an answer with no tokens. One prefill per answer, prompts shared."""
    out = np.full(len(answers), np.nan)
    keep = [i for i, a in enumerate(answers) if a.strip()]
    if not keep:
        return out
    conts = [[answers[i]] for i in keep]
    res = score_sequences(model, tokenizer, [prompts[i] for i in keep], conts, [0.0], batch_size=batch_size, force=force)
    for k, i in enumerate(keep):
        out[i] = float(res.logprob[k, 0, 0]) / float(res.ntokens[k, 0])
    return out


def next_token_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    token_sets: Sequence[Sequence[int]],
    strengths: Sequence[float] = (0.0,),
    vector: Any = None,
    layers: Any = None,
    *,
    batch_size: int = 32,
    force: bool = False,
    trunk: bool = True,
    progress: bool = False,
    desc: str = "next-token",
) -> tuple[np.ndarray, np.ndarray]:
    """Log-probabilities of the next token after each prompt, over the full vocabulary.

    Returns ``(lp, top)``: ``lp[i, s, k, m]`` = log P(token_sets[k][m]) (token sets padded with
    -inf) and ``top[i, s]`` = the full-vocabulary argmax token id. With ``trunk`` (a vector and several
    strengths) the blocks below the first steered layer run once per prompt, not once per strength.
    """
    n = len(prompts)
    S = [float(check_strength(x)) for x in strengths]
    K_sets = len(token_sets)
    M = max(len(t) for t in token_sets)
    ids_mat = torch.full((K_sets, M), -1, dtype=torch.long)
    for k, ts in enumerate(token_sets):
        ids_mat[k, : len(ts)] = torch.as_tensor(list(ts))
    lp = np.full((n, len(S), K_sets, M), -np.inf)
    top = np.zeros((n, len(S)), dtype=np.int64)
    penc = [encode(tokenizer, p) for p in prompts]
    rows = sorted([(i, s) for i in range(n) for s in range(len(S))], key=lambda r: (len(penc[r[0]]), r))
    dev = model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    keep_ok = accepts_logits_to_keep(model)
    bar = tqdm(total=len(rows), desc=desc, unit="row", disable=not progress, leave=False)
    first = _trunk_plan(model, vector, layers, S, trunk)
    K = len(S)
    if first is not None:  # batches of whole items: all strengths of an item share its trunk
        order = sorted(range(n), key=lambda i: (len(penc[i]), i))
        per_items = max(1, batch_size // K)
        batches = [[(i, s) for i in order[b0 : b0 + per_items] for s in range(K)] for b0 in range(0, n, per_items)]
    else:
        batches = [rows[b0 : b0 + batch_size] for b0 in range(0, len(rows), batch_size)]
    safe = ids_mat.clamp(min=0)
    for batch in batches:
        st = torch.as_tensor([S[s] for _, s in batch])
        kw: dict[str, Any] = {"use_cache": False}
        if keep_ok:
            kw["logits_to_keep"] = 1
        # with a shared trunk the model sees each item once; the hooks fan it out to its K rows
        ids, mask = pad_batch([penc[i] for i, _ in (batch[::K] if first is not None else batch)], pad_id, "left", dev)
        with _ctx(model, vector, st, layers, force, first, K), torch.inference_mode():
            logits = _wide(forward(model, ids, mask, **kw).logits[:, -1])
        logp = torch.log_softmax(logits, dim=-1).double().cpu()
        am = logp.argmax(-1).numpy()
        picked = logp[:, safe.reshape(-1)].reshape(len(batch), K_sets, M)
        vals = torch.where(ids_mat.unsqueeze(0) >= 0, picked, torch.full_like(picked, -np.inf)).numpy()
        for b, (i, s) in enumerate(batch):
            lp[i, s] = vals[b]
            top[i, s] = am[b]
        bar.update(len(batch))
    bar.close()
    return lp, top


def drift(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    answers: Sequence[str],
    strengths: Sequence[float],
    vector: Any = None,
    layers: Any = None,
    *,
    max_answer_tokens: int = 64,
    batch_size: int = 16,
    force: bool = False,
    trunk: bool = True,
    progress: bool = False,
    reference: Callable[[], Any] | None = None,
    reference_prompts: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (prompt, strength): mean KL(steered || reference) over the answer's next-token
    distributions, the answer's mean token cross-entropy under the steered model, the number of answer
    tokens scored, and (per prompt) the cross-entropy under the reference.

    The reference is the unsteered model, computed in the same batch (strength 0 is exact). When the
    model itself is modified (a LoRA adapter injected, merged weights), ``reference`` gives a context
    manager under which the model is the base again (e.g. peft's ``disable_adapter``); the reference
    logits are then an extra unsteered pass under it. ``reference_prompts`` (an aligning prompt's unprompted
    prompts, one per prompt): the reference pass reads the same answers after these instead."""
    n = len(prompts)
    S = [float(check_strength(x)) for x in strengths]
    allS = [0.0] + [s for s in S if s != 0.0]
    seqs, alen = [], []
    for p, answer in zip(prompts, answers, strict=True):
        pe = encode(tokenizer, p)
        ae = encode_continuation(tokenizer, answer)[:max_answer_tokens]
        seqs.append(pe + ae)
        alen.append(len(ae))
    rseqs = seqs
    if reference_prompts is not None:
        rseqs = [encode(tokenizer, p) + q[len(q) - a :] for p, q, a in zip(reference_prompts, seqs, alen, strict=True)]
    separate = reference is not None or reference_prompts is not None
    kl = np.zeros((n, len(S)))
    ce = np.zeros((n, len(S)))
    ce_ref = np.zeros(n)
    cnt = np.asarray(alen)
    dev = model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    keep_ok = accepts_logits_to_keep(model)
    per = max(1, batch_size // len(allS))
    first = _trunk_plan(model, vector, layers, allS, trunk)
    order = sorted(range(n), key=lambda i: len(seqs[i]))
    bar = tqdm(total=n, desc="drift", unit="item", disable=not progress, leave=False)
    for b0 in range(0, n, per):
        items = order[b0 : b0 + per]
        rows = [(i, k) for i in items for k in range(len(allS))]
        ids, mask = pad_batch([seqs[i] for i in items] if first is not None else [seqs[i] for i, _ in rows], pad_id, "left", dev)
        L = max(alen[i] for i in items)
        st = torch.as_tensor([allS[k] for _, k in rows])
        kw: dict[str, Any] = {"use_cache": False}
        if keep_ok:
            kw["logits_to_keep"] = L + 1
        with _ctx(model, vector, st, layers, force, first, len(allS)), torch.inference_mode():
            logits = _wide(forward(model, ids, mask, **kw).logits[:, -(L + 1) : -1])
        logp = torch.log_softmax(logits, dim=-1)  # [R, L, V]
        tgt = ids[:, -L:].repeat_interleave(len(allS), dim=0) if first is not None else ids[:, -L:]
        tok_ce = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)  # [R, L]
        logp = logp.view(len(items), len(allS), L, -1)
        base = logp[:, :1]
        ref_ce = tok_ce.view(len(items), len(allS), L)[:, 0]
        if separate:
            rids, rmask = pad_batch([rseqs[i] for i in items], pad_id, "left", dev)
            with reference() if reference is not None else contextlib.nullcontext(), torch.inference_mode():
                base = torch.log_softmax(_wide(forward(model, rids, rmask, **kw).logits[:, -(L + 1) : -1]), dim=-1)
            ref_ce = -base.gather(-1, rids[:, -L:].unsqueeze(-1)).squeeze(-1)
            base = base.unsqueeze(1)
        kl_tok = (logp.exp() * (logp - base)).sum(-1)  # [I, S', L]
        for a, i in enumerate(items):
            valid = slice(L - alen[i], L)
            ce_ref[i] = float(ref_ce[a, valid].mean())
            for k, s in enumerate(allS):
                for si, sv in enumerate(S):
                    if sv == s:
                        kl[i, si] = float(kl_tok[a, k, valid].mean())
                        ce[i, si] = float(tok_ce[a * len(allS) + k, valid].mean())
        bar.update(len(items))
    bar.close()
    return kl, ce, cnt, ce_ref
