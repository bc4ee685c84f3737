"""The merge-method registry: a merge method is a function of one matrix's task vectors, registered by name.

``@register_merge_method("name", version=1)`` on ``fn(deltas, weights, spec) -> merged delta`` makes ``name``
usable in a merge config (``merges: [{method: name}]``), in ``merge_deltas`` and in every store key (the
version is part of each merged intervention's key: bump it when a fix changes results).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

__all__ = ["MergeMethod", "MergeParams", "MERGE_REGISTRY", "register_merge_method", "merge_methods"]


@dataclass(frozen=True)
class MergeParams:
    """A merge method's parameters (a merge config's spec carries them): the fraction of each task vector
    kept (TIES, DARE), DARE's combination step, and R-TSVM's outlier multiple and energy."""

    density: float = 0.5
    combine: str = "linear"
    outlier_m: float = 5.0
    energy: float = 0.9


@dataclass(frozen=True)
class MergeMethod:
    """A registered merge method: ``fn(deltas, weights, spec)`` merges one matrix's task vectors (a list of
    tensors of one shape, float32) with the specialists' weights under a merge spec (a
    :class:`MergeParams`: ``density``, ``combine``, ``outlier_m``, ``energy``). ``version`` is
    the version of its implementation (bump it when a fix changes results: old rows get other keys)."""

    name: str
    fn: Callable[[list[torch.Tensor], list[float], Any], torch.Tensor]
    version: int = 1
    doc: str = ""


MERGE_REGISTRY: dict[str, MergeMethod] = {}


MergeFn = Callable[..., torch.Tensor]


def register_merge_method(name: str, *, version: int = 1, doc: str = "") -> Callable[[MergeFn], MergeFn]:
    """Decorator: register ``fn(deltas, weights, spec) -> merged delta`` as merge method ``name`` (usable as
    ``merges: [{method: name}]`` in a merge config). See docs/DESIGN.md, "Adding a merge method"."""

    def deco(fn: MergeFn) -> MergeFn:
        if name in MERGE_REGISTRY:
            raise ValueError(f"merge method {name!r} is registered twice")
        MERGE_REGISTRY[name] = MergeMethod(name, fn, version, doc)
        return fn

    return deco


def merge_methods() -> tuple[str, ...]:
    return tuple(MERGE_REGISTRY)
