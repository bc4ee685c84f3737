"""A method's parameters, declared the same way by every registry (trained methods, merge methods): a dataclass
whose fields are made with :func:`param` (the default and the help text, as trl's configs write them), checked
value by value with :func:`typed` when a config's flat keys are turned into it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from steertax.errors import ConfigError

__all__ = ["param", "NoParams", "typed", "non_default_params"]


@dataclass(frozen=True)
class NoParams:
    """A method without parameters of its own."""


def param(default: Any, help: str, *, yaml: Optional[str] = None) -> Any:
    """A method parameter: its default, its help text (``metadata["help"]``) and, optionally, its name in YAML
    when Python cannot spell it (``lambda``)."""
    return field(default=default, metadata={"help": help} | ({"yaml": yaml} if yaml else {}))


def typed(hint: Any, v: Any, where: str, error: type[Exception] = ConfigError) -> Any:
    """A value checked against its parameter's type: a float accepts an int and must be finite, a bool is no
    number, text is text. Other types pass as they are."""
    if hint is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise error(f"{where}: expected a number, got {v!r}")
        if not math.isfinite(v):
            raise error(f"{where}: {v!r} is not a finite number")
        return float(v)
    if hint is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise error(f"{where}: expected an integer, got {v!r}")
    if hint is str and not isinstance(v, str):
        raise error(f"{where}: expected text, got {v!r}")
    if hint is bool and not isinstance(v, bool):
        raise error(f"{where}: expected true or false, got {v!r}")
    return v


def non_default_params(p: Any) -> dict[str, Any]:
    """The parameters of ``p`` whose values are not their defaults (in declaration order)."""
    out = {}
    for f in dataclasses.fields(p):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        v = getattr(p, f.name)
        if v != default:
            out[f.name] = v
    return out
