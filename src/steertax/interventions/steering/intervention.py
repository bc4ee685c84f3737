"""Steering (and conditional steering) as an intervention: a vector over a grid of strengths r_e.

The strengths are the knob: one evaluation scores every strength (batched per row, a shared trunk below
the steered layers) and each row records its r_e, so the key covers the vector and the condition, not the
grid. With a ``condition`` the intervention is conditional steering (method ``conditional``): rows whose
prompt the condition does not fire on are scored unsteered (see :mod:`steertax.interventions.conditional`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

from steertax.interventions.core import Applied, Intervention, register_intervention, tensors_hash

__all__ = ["SteeringIntervention", "vector_id", "condition_id"]


def vector_id(vec: Any) -> str:
    """A short content hash of a steering vector: its directions' bytes per layer (and which layers)."""
    return tensors_hash(vec.directions, 12)


def condition_id(cond: Any) -> str:
    """A short hash of a condition (direction bytes, layer, threshold, comparator, read, chat)."""
    h = hashlib.sha256(cond.direction.detach().cpu().numpy().tobytes())
    fields = [cond.layer, cond.threshold, cond.comparator, cond.read, cond.chat]
    if getattr(cond, "score", "cosine") != "cosine":  # the default adds nothing: older conditions keep their keys
        fields.append(cond.score)
    h.update(json.dumps(fields).encode())
    return h.hexdigest()[:12]


@register_intervention("steering", 1)
@dataclass
class SteeringIntervention(Intervention):
    """A steering vector over a grid of strengths (one batched evaluation, one row per strength), gated by
    ``condition`` when one is given."""

    vector: Any = None
    strengths: Sequence[float] = (0.0,)
    condition: Optional[Any] = None
    label: str = ""

    method: str = field(init=False, default="steering")  # the store's method column: steering | conditional

    def __post_init__(self) -> None:
        self.method = "steering" if self.condition is None else "conditional"

    @property
    def batched(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "vector": vector_id(self.vector) if self.vector is not None else None,
            "layers": sorted(self.vector.directions) if self.vector is not None else [],
            "condition": condition_id(self.condition) if self.condition is not None else None,
        }

    def name(self) -> str:
        return self.label or (f"vector {self.describe()['vector']}" if self.vector is not None else "unsteered")

    @contextlib.contextmanager
    def apply(self, model: Any) -> Iterator[Applied]:
        yield Applied(model, self.vector, [float(s) for s in self.strengths], self.condition)
