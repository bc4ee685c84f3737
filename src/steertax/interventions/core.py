"""The intervention protocol, the one store key, the identity intervention and the evaluation of any
intervention into the results store.

An intervention is applied to the base model inside ``with iv.apply(model) as applied:`` and removed when
the block ends (the model bit-identical to before). ``applied`` (:class:`Applied`) says what the scorers
need: the model to run, the steering vector and strengths (the knob, one row per value; ``[0.0]`` for a
weight intervention), the condition gating the steering (or None), a context manager under which the
model is the base model again (drift's reference), whether the weights were modified in place (a
backend that reloads the checkpoint, vLLM, must refuse), and the prompt frame its prompts are built through
(an aligning prompt).

``iv.key`` is a hash of ``iv.describe()`` (the complete resolved description: method, setting, training
data and settings, model, dtype ...) together with the method name and the version of its implementation
(:data:`INTERVENTIONS`), so a changed field or a fixed method never reuses stored rows. The knob (steering's
r_e) is not in the key: it is the row's ``strength`` column. :func:`store_key` is the only place a store run
id is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Mapping, Optional

from steertax.models import with_frame

__all__ = [
    "INTERVENTIONS",
    "Applied",
    "Intervention",
    "BaseIntervention",
    "register_intervention",
    "store_key",
    "description_hash",
    "tensors_hash",
]

# kind -> the version of its implementation (how it is applied). Bump a kind's version when a fix changes
# its results: every stored row of the old version then has another key and is recomputed.
INTERVENTIONS: dict[str, int] = {}


def register_intervention(kind: str, version: int) -> Callable[[type], type]:
    """Class decorator: register an intervention kind with the version of its implementation."""

    def deco(cls: type) -> type:
        if kind in INTERVENTIONS and INTERVENTIONS[kind] != version:
            raise ValueError(f"intervention kind {kind!r} registered twice with different versions")
        INTERVENTIONS[kind] = version
        cls.kind = kind  # type: ignore[attr-defined]
        return cls

    return deco


def tensors_hash(tensors: Mapping[Any, Any], n: int = 16) -> str:
    """A short content hash of named tensors (names sorted; each tensor's float32 bytes)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(str(k).encode())
        h.update(tensors[k].detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:n]


def description_hash(obj: Any, n: int = 16) -> str:
    """A stable short hash of a JSON-able description (keys sorted; non-JSON values by ``str``)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


@dataclass
class Applied:
    """What an applied intervention gives the scorers (see the module docstring)."""

    model: Any
    vector: Any = None
    strengths: list[float] = field(default_factory=lambda: [0.0])
    condition: Any = None
    reference: Optional[Callable[[], Any]] = None
    weights_modified: bool = False
    # a prompt frame (an aligning prompt) every chat prompt of the scorers is built through: the scorers get the
    # tokenizer from :func:`steertax.models.with_frame`; None: the prompts as they are
    frame: Optional[Callable[..., Any]] = None

    def prompt_tokenizer(self, tokenizer: Any) -> Any:
        """The tokenizer the scorers build their prompts with under this intervention."""
        return tokenizer if self.frame is None else with_frame(tokenizer, self.frame)


class Intervention:
    """One way of changing a model. Subclasses set ``method`` (the store's method column), implement
    :meth:`describe` (everything that can change a result), :meth:`name` and :meth:`apply`."""

    kind: ClassVar[str] = ""

    @property
    def batched(self) -> bool:
        """Its knob is a grid scored in one pass, one row per value (steering's r, a weight scale α)."""
        return False

    method: str = ""

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def name(self) -> str:
        """Human-readable: the store's setting column and the report's label."""
        raise NotImplementedError

    @property
    def key(self) -> str:
        return description_hash(
            {"kind": self.kind, "version": INTERVENTIONS.get(self.kind), "method": self.method, "describe": self.describe()}
        )

    @contextlib.contextmanager
    def apply(self, model: Any) -> Iterator[Applied]:
        raise NotImplementedError
        yield  # pragma: no cover


def store_key(scope: str, iv: Intervention) -> str:
    """The results store's run id of ``iv``'s rows within a run: ``scope`` (what every row of the run shares:
    the run's evaluation id over model, tasks, items and seed), the method, the readable name and the key."""
    return f"{scope}|{iv.method}|{iv.name()}|{iv.key}"


@register_intervention("base", 1)
@dataclass
class BaseIntervention(Intervention):
    """The unmodified model: the identity intervention, every method's reference point."""

    method: str = "base"
    label: str = "base"

    def describe(self) -> dict[str, Any]:
        return {}

    def name(self) -> str:
        return self.label

    @contextlib.contextmanager
    def apply(self, model: Any) -> Iterator[Applied]:
        yield Applied(model)
