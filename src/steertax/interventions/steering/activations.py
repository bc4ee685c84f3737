"""Padding-correct batching and capture of decoder-block outputs, with streaming accumulators.

Activations are the outputs of decoder blocks (the residual stream after block i, which is also
where steering adds its vector). Position 0 is never used in means or norms: it carries activations
about 100x larger than the rest in many models.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import transformers
from torch import nn

from steertax.errors import DataError
from steertax.interventions.steering.extraction import get_extraction_method
from steertax.models import encode, find_blocks

__all__ = ["pad_batch", "forward", "capture", "LayerAccumulator", "position_ids_from_mask", "cache_arg", "output_cache"]


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, side: str = "left", device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token-id lists into (input_ids, attention_mask)."""
    if side not in ("left", "right"):
        raise ValueError("side must be 'left' or 'right'")
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s)
        if n == 0:
            raise DataError(f"sequence {i} is empty after tokenization: every text needs at least one token")
        if side == "left":
            ids[i, T - n :] = torch.as_tensor(list(s))
            mask[i, T - n :] = 1
        else:
            ids[i, :n] = torch.as_tensor(list(s))
            mask[i, :n] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Positions that count only real tokens, so left padding does not shift them."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


_ACCEPTS_POS: dict[type, bool] = {}


def accepts_position_ids(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes ``position_ids`` (detected once per model class)."""
    t = type(model)
    if t not in _ACCEPTS_POS:
        try:
            _ACCEPTS_POS[t] = "position_ids" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            _ACCEPTS_POS[t] = False
    return _ACCEPTS_POS[t]


_CACHE_ARG: dict[type, str] = {}


def transformers_version() -> tuple[int, int]:
    """(major, minor) of the installed transformers; (0, 0) if it cannot be read."""
    try:
        major, minor = transformers.__version__.split(".")[:2]
        return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)
    except Exception:
        return (0, 0)


def cache_arg(model: nn.Module) -> str:
    """The keyword ``model.forward`` takes its KV cache under, detected once per model class:
    ``cache`` since transformers 5.24 (which deprecates ``past_key_values`` with a FutureWarning),
    ``past_key_values`` before. Read from the forward signature; the version decides only for a
    forward that names neither."""
    t = type(model)
    if t not in _CACHE_ARG:
        try:
            params = inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        if "cache" in params:
            _CACHE_ARG[t] = "cache"
        elif "past_key_values" in params:
            _CACHE_ARG[t] = "past_key_values"
        else:
            _CACHE_ARG[t] = "cache" if transformers_version() >= (5, 24) else "past_key_values"
    return _CACHE_ARG[t]


def output_cache(out: Any) -> Any:
    """The KV cache a forward call returned (``out.cache`` since transformers 5.24,
    ``out.past_key_values`` before), read without touching the deprecated alias; None if absent."""
    keys = out.keys() if hasattr(out, "keys") else ()
    for name in ("cache", "past_key_values"):
        if name in keys:
            return out[name]
    return None


def forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> Any:
    """``model(...)`` with position ids derived from the attention mask (left padding safe)."""
    if accepts_position_ids(model) and "position_ids" not in kwargs:
        kwargs["position_ids"] = position_ids_from_mask(attention_mask)
    return model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


class _Stop(Exception):
    pass


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (cpu for a model without parameters)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _read(
    store: dict[int, torch.Tensor],
    layers: Sequence[int],
    ids: torch.Tensor,
    mask: torch.Tensor,
    padding_side: str,
    position: str,
    answer_starts: Sequence[int] | None,
    idx: Sequence[int],
    pool: Any,
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """One batch's reads at each layer (see :func:`capture`)."""
    B, T = ids.shape
    lengths = mask.sum(-1)
    # index of each row's first real token in padded coordinates
    first = (T - lengths) if padding_side == "left" else torch.zeros_like(lengths)
    reps: dict[int, torch.Tensor] = {}
    norms: dict[int, torch.Tensor] = {}
    if pool is not None:
        for i in layers:
            reps[i] = pool(store[i], mask).float().cpu()
            norms[i] = reps[i].norm(dim=-1)
    elif position == "last":
        last = first + lengths - 1
        if (lengths < 2).any():
            raise DataError("a text has a single token: the last-token read would be position 0; use longer texts")
        rows = torch.arange(B, device=ids.device)
        for i in layers:
            h = store[i][rows, last].float()
            reps[i] = h.cpu()
            norms[i] = h.norm(dim=-1).cpu()
    else:
        assert answer_starts is not None  # position == "answer_mean" requires it (checked above)
        starts = torch.as_tensor([max(1, int(answer_starts[j])) for j in idx], device=ids.device)
        if (starts >= lengths).any():
            bad = idx[int(torch.nonzero(starts >= lengths)[0])]
            raise DataError(f"text {bad} has no answer tokens after its prompt: the answer must be non-empty")
        rel = torch.arange(T, device=ids.device).unsqueeze(0) - first.unsqueeze(1)  # token index within the row
        sel = (rel >= starts.unsqueeze(1)) & (rel < lengths.unsqueeze(1))
        w = sel.float() / sel.sum(-1, keepdim=True).float()
        for i in layers:
            h = store[i].float()
            reps[i] = torch.einsum("bt,btd->bd", w, h).cpu()
            norms[i] = torch.einsum("bt,bt->b", w, h.norm(dim=-1)).cpu()
    return reps, norms


def capture(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    layers: Sequence[int],
    *,
    position: str = "last",
    answer_starts: Sequence[int] | None = None,
    batch_size: int = 16,
    padding_side: str = "right",
    pool: Any = None,
) -> Iterator[tuple[list[int], dict[int, torch.Tensor], dict[int, torch.Tensor]]]:
    """Yield ``(indices, reps, norms)`` per batch: ``reps[layer]`` is [B, d] float32 at the read
    position (``last`` token, or ``answer_mean`` = mean over tokens from ``answer_starts[i]`` to the
    end), ``norms[layer]`` the mean L2 norm of the read token(s) per row. Position 0 is excluded.

    The forward pass stops after the deepest requested block (the rest of the model is not run).
    Texts are length-sorted into batches; ``indices`` map rows back to ``texts``. ``pool(states, mask)``:
    read each layer's [B, T, d] states with this function instead of ``position`` (norms are then those
    of the pooled rows).
    """
    if position not in ("last", "answer_mean"):
        raise ValueError(f"position must be 'last' or 'answer_mean', got {position!r}")
    if position == "answer_mean" and answer_starts is None:
        raise DataError("position='answer_mean' needs pairs with a shared prompt (ContrastPair.prompt) to know where answers start")
    blocks = find_blocks(model)
    layers = sorted(set(int(i) for i in layers))
    deepest = layers[-1]
    enc = [encode(tokenizer, t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(enc[i]))
    dev = model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    store: dict[int, torch.Tensor] = {}

    def make_hook(i: int):
        def hook(mod: nn.Module, args: Any, out: Any) -> None:
            store[i] = out[0] if isinstance(out, tuple) else out
            if i == deepest:
                raise _Stop

        return hook

    handles = [blocks[i].register_forward_hook(make_hook(i)) for i in layers]
    try:
        for b0 in range(0, len(order), batch_size):
            idx = order[b0 : b0 + batch_size]
            ids, mask = pad_batch([enc[i] for i in idx], pad_id, padding_side, dev)
            store.clear()
            with torch.inference_mode():
                try:
                    forward(model, ids, mask, use_cache=False)
                except _Stop:
                    pass
            reps, norms = _read(store, layers, ids, mask, padding_side, position, answer_starts, idx, pool)
            yield list(idx), reps, norms
    finally:
        for hk in handles:
            hk.remove()


@dataclass
class LayerAccumulator:
    """Streaming statistics of paired activations at one layer (float64) for one extraction method: memory
    is O(d) (O(d²) for a method that asks for Σ d dᵀ), not O(pairs).

    Keeps, for every method, n, Σa, Σm, Σd (d = a − m), Σ s·d with a seeded random sign s per pair (RepE's
    random pair order) and the residual-norm sum; Σ d dᵀ when the method declares the ``"dd"`` statistic;
    and the method's own streaming ``state`` (e.g. the probe's incremental logistic regression). The method,
    a name registered in :mod:`steertax.interventions.steering.extraction`, turns them into the direction.
    """

    dim: int
    method: str
    seed: int = 0
    n: int = 0
    sum_a: np.ndarray = field(init=False)
    sum_m: np.ndarray = field(init=False)
    sum_d: np.ndarray = field(init=False)
    sum_sd: np.ndarray = field(init=False)
    sum_dd: np.ndarray | None = field(init=False, default=None)
    norm_sum: float = 0.0
    norm_n: int = 0
    state: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._method = get_extraction_method(self.method)
        z = lambda: np.zeros(self.dim, dtype=np.float64)  # noqa: E731
        self.sum_a, self.sum_m, self.sum_d, self.sum_sd = z(), z(), z(), z()
        if "dd" in self._method.stats:
            self.sum_dd = np.zeros((self.dim, self.dim), dtype=np.float64)
        if self._method.state is not None:
            self.state = self._method.state(self.dim, self.seed)
        self._rng = np.random.default_rng(self.seed)

    def update(self, a: torch.Tensor, m: torch.Tensor, norms_a: torch.Tensor, norms_m: torch.Tensor) -> None:
        A = a.double().numpy()
        M = m.double().numpy()
        D = A - M
        s = self._rng.choice(np.array([-1.0, 1.0]), size=len(D))
        self.n += len(D)
        self.sum_a += A.sum(0)
        self.sum_m += M.sum(0)
        self.sum_d += D.sum(0)
        self.sum_sd += (s[:, None] * D).sum(0)
        if self.sum_dd is not None:
            self.sum_dd += D.T @ D
        self.norm_sum += float(norms_a.double().sum() + norms_m.double().sum())
        self.norm_n += 2 * len(D)
        if self.state is not None:
            self.state.update(D, self._rng)

    @property
    def mean_norm(self) -> float:
        return self.norm_sum / max(self.norm_n, 1)

    def direction(self) -> np.ndarray:
        """Unit direction; + points to the aligned side (mean aligned-minus-misaligned projects > 0)."""
        if self.n < 1:
            raise DataError("no pairs were accumulated")
        if self.n < self._method.min_pairs:
            raise DataError(f"{self.method} needs at least {self._method.min_pairs} pairs")
        mean_d = self.sum_d / self.n
        v = np.asarray(self._method.direction(self), dtype=np.float64)
        if v.shape != (self.dim,):
            raise ValueError(f"extraction method {self.method!r} gave a direction of shape {v.shape}, not ({self.dim},)")
        nrm = np.linalg.norm(v)
        if not np.isfinite(nrm) or nrm == 0:
            raise DataError(f"{self.method} gave a zero direction: are the aligned and misaligned texts identical?")
        v = v / nrm
        if float(v @ mean_d) < 0:
            v = -v
        return v
