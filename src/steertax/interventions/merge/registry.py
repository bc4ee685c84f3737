"""The merge-method registry: a merge method is a function of one matrix's task vectors, registered by name
with the parameters it declares.

``@register_merge_method("name", version=1, params=P, check=c)`` on ``fn(deltas, weights, params) -> merged
delta`` makes ``name`` usable in a merge config (``merges: [{method: name, <its parameters>}]``), in
``merge_deltas`` and in every store key (the version and the parameters are part of each merged
intervention's key: bump the version when a fix changes results).

A method's parameters are its own dataclass ``P`` (each field a :func:`param`: its default and help text);
``fn`` receives an instance of it. A config's keys are checked against it, so a parameter another method owns
(``density`` on ``task_arithmetic``) is refused naming the method's own. ``check(params)`` returns a message
when the values are invalid (``None`` when they are fine).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import torch

from steertax.errors import ConfigError
from steertax.params import NoParams, non_default_params, param, typed

__all__ = [
    "MergeMethod",
    "NoParams",
    "MERGE_REGISTRY",
    "param",
    "register_merge_method",
    "merge_methods",
    "merge_method",
    "build_merge_params",
    "non_default_params",
]


MergeFn = Callable[[list[torch.Tensor], list[float], Any], torch.Tensor]


@dataclass(frozen=True)
class MergeMethod:
    """A registered merge method: ``fn(deltas, weights, params)`` merges one matrix's task vectors (a list of
    tensors of one shape, float32) with the specialists' weights under ``params``, an instance of the method's
    own parameter dataclass. ``check(params)``: a message when they are invalid. ``version`` is the version
    of its implementation (bump it when a fix changes results: old rows get other keys)."""

    name: str
    fn: MergeFn
    version: int = 1
    doc: str = ""
    params: type = NoParams
    check: Optional[Callable[[Any], Optional[str]]] = None

    def param_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.params))

    def problem(self, p: Any) -> Optional[str]:
        """Why the parameters ``p`` cannot be used by this method (the wrong type, or its ``check``), or None."""
        if not isinstance(p, self.params):
            return f"{self.name} takes {self.params.__name__} parameters, got {type(p).__name__}"
        return self.check(p) if self.check is not None else None


MERGE_REGISTRY: dict[str, MergeMethod] = {}

# names a parameter cannot have: a merge config's keys every method shares, and merge_deltas' own arguments
RESERVED = ("method", "scales", "weights", "label", "weight_grid", "weight_of", "params", "seed")


def register_merge_method(
    name: str,
    *,
    version: int = 1,
    doc: str = "",
    params: type = NoParams,
    check: Optional[Callable[[Any], Optional[str]]] = None,
) -> Callable[[MergeFn], MergeFn]:
    """Decorator: register ``fn(deltas, weights, params) -> merged delta`` as merge method ``name`` with its
    parameter dataclass ``params`` (default: none) and its ``check``. See docs/extending.md, "A merge method"."""

    if not dataclasses.is_dataclass(params) or not isinstance(params, type):
        raise TypeError(f"merge method {name!r}: params must be a dataclass")
    for f in dataclasses.fields(params):
        if f.name in RESERVED:
            raise TypeError(f"merge method {name!r}: a parameter cannot be called {f.name!r} (every merge has it: {', '.join(RESERVED)})")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"merge method {name!r}: parameter {f.name!r} needs a default (param(default, help))")

    def deco(fn: MergeFn) -> MergeFn:
        if name in MERGE_REGISTRY:
            raise ValueError(f"merge method {name!r} is registered twice")
        MERGE_REGISTRY[name] = MergeMethod(name, fn, version, doc, params, check)
        return fn

    return deco


def merge_methods() -> tuple[str, ...]:
    return tuple(MERGE_REGISTRY)


def merge_method(name: Any, where: str = "method", error: type[Exception] = ConfigError) -> MergeMethod:
    """The registered method ``name``, or ``error`` naming the registered ones."""
    m = MERGE_REGISTRY.get(name) if isinstance(name, str) else None
    if m is None:
        raise error(f"{where}: {name!r} is not one of {merge_methods()}")
    return m


def build_merge_params(m: MergeMethod, given: Mapping[str, Any], where: str, error: type[Exception] = ConfigError) -> Any:
    """Method ``m``'s parameter dataclass from flat keys (types checked; a key that is not one of its
    parameters is named with the ones it has), then its ``check``; ``error`` for what is wrong, one line."""
    own = m.param_names()
    for k in given:
        if k not in own:
            raise error(
                f"{where}.{k}: not a parameter of {m.name} (its parameters: {', '.join(own) or 'none'}); move it to a method that has it"
            )
    hints = typing.get_type_hints(m.params)
    p = m.params(**{k: typed(hints[k], v, f"{where}.{k}", error) for k, v in given.items()})
    if m.check is not None and (msg := m.check(p)):
        raise error(f"{where}: {msg}")
    return p
