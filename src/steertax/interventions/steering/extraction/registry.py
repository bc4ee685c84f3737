"""The extraction-method registry: how one layer's paired activations become a steering direction.

Activations arrive batch by batch and are folded into streaming statistics (memory does not grow with the
number of pairs), so a method never sees the pairs themselves: it declares the statistics it needs and turns
them into a direction. Every method gets the shared moments of :class:`PairStats` (``n``, ``sum_a``, ``sum_m``,
``sum_d``, ``sum_sd``); one may ask for more by name (``stats=("dd",)``: Σ d dᵀ, O(dim²) memory) or keep a
streaming statistic of its own (``state=``: a class built as ``state(dim, seed)`` whose ``update(D, rng)`` sees
each batch's pair differences), read back as ``stats.state``.

``@register_extraction_method("name", doc="...")`` on ``direction(stats) -> array of shape (dim,)`` makes
``name`` usable as ``extract_vector(method="name")``, as ``vector.method`` in a config and as ``steertax extract
--method name``. The direction needs neither scale nor sign: it is normalized to unit norm and oriented so that
the mean aligned-minus-misaligned difference projects positively, and the vector records ``name`` as its method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import numpy as np

__all__ = [
    "EXTRACTION_METHODS",
    "STATISTICS",
    "ExtractionMethod",
    "PairStats",
    "StreamState",
    "extraction_methods",
    "get_extraction_method",
    "register_extraction_method",
]

STATISTICS = {"dd": "Σ d dᵀ over the pairs (dim × dim, float64): the second moment of the pair differences"}
"""The optional shared statistics a method may ask for by name (the accumulator keeps them only when asked)."""


class PairStats(Protocol):
    """What a method's ``direction`` reads: one layer's statistics over the training pairs (float64 arrays of
    shape (dim,) unless noted; d = aligned − misaligned activation of a pair, s = a seeded random sign per pair,
    RepE's random pair order)."""

    n: int  # pairs
    sum_a: np.ndarray  # Σ a
    sum_m: np.ndarray  # Σ m
    sum_d: np.ndarray  # Σ d
    sum_sd: np.ndarray  # Σ s·d
    sum_dd: Optional[np.ndarray]  # Σ d dᵀ (dim × dim) when the method declares stats=("dd",), else None
    state: Any  # the method's own streaming state (``state=``), else None


class StreamState(Protocol):
    """A method's own streaming statistic: built once per layer as ``cls(dim, seed)``; ``update`` gets each
    batch's pair differences D [pairs, dim] (float64) and the layer's seeded generator."""

    def update(self, D: np.ndarray, rng: np.random.Generator) -> None: ...


DirectionFn = Callable[[PairStats], np.ndarray]


@dataclass(frozen=True)
class ExtractionMethod:
    """A registered extraction method: its ``name``, a one-line ``doc``, the optional statistics it needs
    (``stats``, keys of :data:`STATISTICS`), its own streaming state's class (``state``), the fewest pairs it
    works with, ``direction(stats)``, the unnormalized direction, and the ``version`` of its implementation
    (bump it when a fix changes results: a run folder's cached vector is then extracted afresh; the rows'
    store keys follow the vector's bytes anyway)."""

    name: str
    direction: DirectionFn
    doc: str
    stats: tuple[str, ...] = ()
    state: Optional[Callable[[int, int], StreamState]] = None
    min_pairs: int = 1
    version: int = 1


EXTRACTION_METHODS: dict[str, ExtractionMethod] = {}


def register_extraction_method(
    name: str,
    *,
    doc: str,
    stats: tuple[str, ...] = (),
    state: Optional[Callable[[int, int], StreamState]] = None,
    min_pairs: int = 1,
    version: int = 1,
) -> Callable[[DirectionFn], DirectionFn]:
    """Decorator: register ``direction(stats) -> np.ndarray`` as extraction method ``name`` (see the module
    docstring; docs/extending.md shows a worked example)."""
    unknown = [s for s in stats if s not in STATISTICS]
    if unknown:
        raise ValueError(f"extraction method {name!r} asks for unknown statistic(s) {unknown}: use {', '.join(STATISTICS)}")

    def deco(fn: DirectionFn) -> DirectionFn:
        if name in EXTRACTION_METHODS:
            raise ValueError(f"extraction method {name!r} is registered twice")
        EXTRACTION_METHODS[name] = ExtractionMethod(name, fn, doc, tuple(stats), state, min_pairs, version)
        return fn

    return deco


def extraction_methods() -> tuple[str, ...]:
    """The registered methods' names, in registration order (the default, ``pca``, first)."""
    return tuple(EXTRACTION_METHODS)


def get_extraction_method(name: str) -> ExtractionMethod:
    """The method registered as ``name``; a ValueError naming the known ones otherwise."""
    try:
        return EXTRACTION_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown extraction method {name!r}: use one of {', '.join(EXTRACTION_METHODS)}") from None
