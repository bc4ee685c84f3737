"""extract_vector: contrast pairs -> per-layer unit directions with provenance."""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from steertax._util import parse_layers
from steertax._version import __version__
from steertax.errors import DataError
from steertax.interventions.steering.activations import LayerAccumulator, capture
from steertax.interventions.steering.extraction import get_extraction_method
from steertax.interventions.steering.pairs import ContrastPair, PairSet, as_pairs
from steertax.interventions.steering.vectors import SteeringVector, now_iso
from steertax.models import encode, hidden_size, model_id, num_layers

__all__ = ["extract_vector"]


def _answer_starts(tokenizer: Any, pairs: Sequence[ContrastPair]) -> list[int]:
    starts = []
    for p in pairs:
        if p.prompt is None:
            raise DataError("position='answer_mean' needs pairs with a shared prompt; use position='last' or a pair builder")
        starts.append(len(encode(tokenizer, p.prompt)))
    return starts


def _batches_of_pairs(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[ContrastPair],
    layers: list[int],
    position: str,
    batch_size: int,
    desc: str,
    progress: bool,
):
    """Yield (a_reps, m_reps, a_norms, m_norms) per chunk of pairs; the two members of a pair are
    in the same forward batch."""
    starts = _answer_starts(tokenizer, pairs) if position == "answer_mean" else None
    chunk = max(1, batch_size // 2)
    bar = tqdm(total=len(pairs), desc=desc, unit="pair", disable=not progress, leave=False)
    try:
        for c0 in range(0, len(pairs), chunk):
            ps = pairs[c0 : c0 + chunk]
            texts = [p.aligned for p in ps] + [p.misaligned for p in ps]
            st = None if starts is None else starts[c0 : c0 + chunk] * 2
            reps = {i: torch.empty(0) for i in layers}
            norms = {i: torch.empty(0) for i in layers}
            got_idx: list[int] = []
            parts_r: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
            parts_n: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
            for idx, r, n in capture(model, tokenizer, texts, layers, position=position, answer_starts=st, batch_size=len(texts)):
                got_idx += idx
                for i in layers:
                    parts_r[i].append(r[i])
                    parts_n[i].append(n[i])
            inv = torch.as_tensor(np.argsort(np.asarray(got_idx)))
            k = len(ps)
            for i in layers:
                reps[i] = torch.cat(parts_r[i])[inv]
                norms[i] = torch.cat(parts_n[i])[inv]
            yield (
                {i: reps[i][:k] for i in layers},
                {i: reps[i][k:] for i in layers},
                {i: norms[i][:k] for i in layers},
                {i: norms[i][k:] for i in layers},
            )
            bar.update(len(ps))
    finally:
        bar.close()


def extract_vector(
    model: Any,
    tokenizer: Any,
    pairs: Any,
    layers: Any = "all",
    method: str = "pca",
    position: str | None = None,
    *,
    heldout: float = 0.2,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
    pair_source: str | None = None,
    aligned_pole: str | None = None,
    misaligned_pole: str | None = None,
) -> SteeringVector:
    """Extract a steering vector from contrast pairs.

    Args:
        pairs: a :class:`~steertax.interventions.steering.pairs.PairSet`, ContrastPairs, or (aligned text, misaligned text)
            tuples (full texts, already formatted).
        layers: ``"all"``, ``"8-12,14"`` or a list of block indices.
        method: an extraction method registered in :mod:`steertax.interventions.steering.extraction`:
            ``pca`` (RepE: first principal component of pair differences in random order), ``mean_diff``
            (difference of class means) or ``probe`` (logistic-regression weight on pair differences), or
            one registered with ``register_extraction_method``. Every direction is unit norm, its sign
            fixed so the mean aligned-minus-misaligned difference projects positively.
        position: ``last`` token, or ``answer_mean`` over the answer tokens after ``pair.prompt``;
            default: the PairSet's ``default_position`` (``answer_mean`` for refusal-vs-compliance
            answers, ``last`` for prompt contrasts), else ``last``.
        heldout: fraction of pairs (seeded shuffle) kept out of training to measure, per layer, the
            fraction of pairs whose aligned member projects higher (``vector.accuracy``).

    Memory does not grow with the number of pairs: activations are folded into per-layer moments
    batch by batch, and the held-out pass only keeps counts.
    """
    get_extraction_method(method)  # an unknown name: a ValueError naming the registered ones
    plist = as_pairs(pairs)
    if position is None:
        position = pairs.default_position if isinstance(pairs, PairSet) else "last"
    if len(plist) < 2:
        raise DataError(f"only {len(plist)} pair given: extraction needs at least 2 pairs")
    n_layers = num_layers(model)
    chosen = list(range(n_layers)) if layers in ("all", None) else parse_layers(layers, n_layers)
    if not 0.0 <= heldout < 1.0:
        raise ValueError("heldout must be in [0, 1)")
    order = list(range(len(plist)))
    random.Random(seed).shuffle(order)
    n_held = int(round(len(plist) * heldout)) if heldout > 0 else 0
    if heldout > 0 and len(plist) >= 4:
        n_held = max(1, n_held)
    if len(plist) - n_held < 2:
        n_held = 0
    held = [plist[i] for i in order[:n_held]]
    train = [plist[i] for i in order[n_held:]]
    d = hidden_size(model)
    accs = {i: LayerAccumulator(d, method, seed=seed + i) for i in chosen}
    for a, m, na, nm in _batches_of_pairs(model, tokenizer, train, chosen, position, batch_size, "extract", progress):
        for i in chosen:
            accs[i].update(a[i], m[i], na[i], nm[i])
    dirs = {i: torch.from_numpy(accs[i].direction()).float() for i in chosen}
    correct = {i: 0 for i in chosen}
    if held:
        for a, m, _, _ in _batches_of_pairs(model, tokenizer, held, chosen, position, batch_size, "held-out", progress):
            for i in chosen:
                correct[i] += int(((a[i] - m[i]).double() @ dirs[i].double() > 0).sum())
    accuracy = {i: correct[i] / len(held) for i in chosen} if held else {}
    raw = {str(i): float(np.linalg.norm(accs[i].sum_d / accs[i].n)) for i in chosen}
    ps = pairs if isinstance(pairs, PairSet) else None
    return SteeringVector(
        directions=dirs,
        model_id=model_id(model),
        hidden_size=d,
        num_layers=n_layers,
        method=method,
        position=position,
        pair_source=pair_source or (ps.source if ps else "user pairs"),
        n_pairs=len(train),
        n_heldout=len(held),
        accuracy=accuracy,
        layer_norms={i: accs[i].mean_norm for i in chosen},
        aligned_pole=aligned_pole or (ps.aligned_pole if ps else "aligned"),
        misaligned_pole=misaligned_pole or (ps.misaligned_pole if ps else "misaligned"),
        extra={
            "seed": seed,
            "heldout_fraction": heldout,
            "steertax_version": __version__,
            "created": now_iso(),
            "mean_diff_norm": raw,
            "dtype": str(next(model.parameters()).dtype),
            "model_type": str(getattr(getattr(model, "config", None), "model_type", "") or ""),
        },
    )
