"""Trained methods declare themselves: each is one file with one :func:`register_trained_method` call.

A :class:`TrainedMethod` carries everything the rest of steertax needs to know about a way of fine-tuning:

- ``params``: its parameter dataclass (each field with ``help`` in its metadata, as trl's configs write them;
  ``metadata={"yaml": "lambda"}`` gives the field another name in YAML). A setting's YAML keys are checked
  against it, so a parameter another method owns (``density`` on ``dpo``) is an error naming the right keys.
- ``build(setting, peft_model, tokenizer, dataset, args)``: its trl trainer (``args``: the common
  TrainingArguments fields).
- ``rows(ctx, setting)``: its training rows (default: the preference pairs), and ``columns``, the columns they
  carry (``prompt`` is rendered with the model's chat template, the rest pass through).
- ``knob``: the parameter its curve moves along (``knob_param``) and where the base sits
  (:class:`steertax.manifest.Knob`); ``None`` for a method whose settings are points.
- ``anchor(params)``: another method's setting that sits on this method's curve (regularized DPO at λ = 0 is
  DPO at its β), as (method, its parameters, the knob value there).
- ``checkpoints``: shares of training at which the adapter is also saved and evaluated (a curve along the
  share of training done, whose 0 is the base), for methods whose knob is training progress.
- ``data_fields``: the ``data.*`` settings its rows depend on (they enter its adapters' keys).
- ``check(params)``: a message when the parameters are invalid (the config is refused with it).
- ``report(ctx)``: what the method adds to its adapter's ``setting.json`` (e.g. dropped rows).
- ``version``: enters every adapter's key (bump it when a fix changes what it trains).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional

from steertax.errors import ConfigError
from steertax.manifest import Knob
from steertax.params import NoParams, param, typed
from steertax.training.data import preference_rows

__all__ = ["TrainedMethod", "TRAINED_METHODS", "register_trained_method", "param", "Anchor", "build_params", "params_dict"]

GROUP = "fine-tuning"  # the family of methods every trained method belongs to (reports colour by it)


@dataclass(frozen=True)
class Anchor:
    """A setting of another method that sits on this method's curve at knob value ``value``."""

    method: str
    params: dict[str, Any]
    value: float


@dataclass(frozen=True)
class TrainedMethod:
    name: str
    version: int
    params: type
    build: Callable[..., Any]
    rows: Callable[..., list[dict[str, Any]]]
    doc: str = ""
    knob: Optional[Knob] = None
    knob_param: Optional[str] = None
    anchor: Optional[Callable[[Any], Optional[Anchor]]] = None
    checkpoints: tuple[float, ...] = ()
    data_fields: tuple[str, ...] = ("pairs", "n_pairs")
    columns: tuple[str, ...] = ("chosen", "rejected")
    check: Optional[Callable[[Any], Optional[str]]] = None
    report: Optional[Callable[..., dict[str, Any]]] = None

    def yaml_names(self) -> dict[str, str]:
        """YAML key -> field name of its parameters."""
        return {f.metadata.get("yaml", f.name): f.name for f in dataclasses.fields(self.params)}


TRAINED_METHODS: dict[str, TrainedMethod] = {}


def register_trained_method(
    name: str,
    *,
    version: int = 1,
    params: type = NoParams,
    rows: Optional[Callable[..., list[dict[str, Any]]]] = None,
    doc: str = "",
    knob: Optional[Knob] = None,
    knob_param: Optional[str] = None,
    anchor: Optional[Callable[[Any], Optional[Anchor]]] = None,
    checkpoints: tuple[float, ...] = (),
    data_fields: tuple[str, ...] = ("pairs", "n_pairs"),
    columns: tuple[str, ...] = ("chosen", "rejected"),
    check: Optional[Callable[[Any], Optional[str]]] = None,
    report: Optional[Callable[..., dict[str, Any]]] = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator on ``build``: register a trained method (usable as ``settings: [{method: name, ...}]``). See the
    module docstring for the fields and docs/extending.md for a worked example."""

    if not dataclasses.is_dataclass(params):
        raise TypeError(f"trained method {name!r}: params must be a dataclass")
    fields = {f.name for f in dataclasses.fields(params)}
    if knob_param is not None and knob_param not in fields:
        raise TypeError(f"trained method {name!r}: knob_param {knob_param!r} is not one of its parameters {sorted(fields)}")
    if (knob is None) != (knob_param is None) and not checkpoints:
        raise TypeError(f"trained method {name!r}: a knob needs its parameter (knob_param), and a knob_param its Knob")
    if checkpoints and (sorted(checkpoints) != list(checkpoints) or checkpoints[-1] != 1.0 or checkpoints[0] <= 0):
        raise TypeError(f"trained method {name!r}: checkpoints must rise to 1.0 from above 0, got {checkpoints}")

    def deco(build: Callable[..., Any]) -> Callable[..., Any]:
        if name in TRAINED_METHODS:
            raise ValueError(f"trained method {name!r} is registered twice")
        TRAINED_METHODS[name] = TrainedMethod(
            name,
            version,
            params,
            build,
            rows or preference_rows,
            doc or (build.__doc__ or "").strip().splitlines()[0] if (doc or build.__doc__) else "",
            knob,
            knob_param,
            anchor,
            tuple(float(c) for c in checkpoints),
            tuple(data_fields),
            tuple(columns),
            check,
            report,
        )
        return build

    return deco


def unregister_trained_method(name: str) -> None:
    """Remove a registered method (tests that register their own)."""
    TRAINED_METHODS.pop(name, None)


def method(name: str, where: str = "method") -> TrainedMethod:
    m = TRAINED_METHODS.get(name)
    if m is None:
        raise ConfigError(f"{where}: {name!r} is not one of the trained methods {', '.join(sorted(TRAINED_METHODS))}")
    return m


def build_params(m: TrainedMethod, given: dict[str, Any], where: str) -> Any:
    """The method's parameter dataclass from YAML keys (types checked; unknown keys named with the valid ones)."""
    names = m.yaml_names()
    unknown = [k for k in given if k not in names and k not in names.values()]
    if unknown:
        own = ", ".join(sorted(names)) or "none"
        raise ConfigError(f"{where}.{unknown[0]}: not a parameter of {m.name} (its parameters: {own}); move it to a method that has it")
    hints = typing.get_type_hints(m.params)
    kw: dict[str, Any] = {}
    for k, v in given.items():
        f = names.get(k, k)
        kw[f] = typed(hints[f], v, f"{where}.{k}")
    p = m.params(**kw)
    if m.check is not None and (msg := m.check(p)):
        raise ConfigError(f"{where}: {msg}")
    return p


def params_dict(p: Any) -> dict[str, Any]:
    return dataclasses.asdict(p)
