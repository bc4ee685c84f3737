"""Interventions: every way of changing a model, as one concept (the spine of steertax).

An :class:`~steertax.interventions.core.Intervention` turns the base model into the model to measure inside
a ``with`` block and leaves it bit-identical when the block ends. Each kind is one module here and one
registration (:func:`register_intervention`):

- :class:`BaseIntervention` (``core``): the identity; every method's reference point.
- :class:`SteeringIntervention` (``steering_iv``): a steering vector over a grid of strengths r_e (the
  knob, one row per strength), optionally gated by a :class:`~steertax.interventions.conditional.Condition` (conditional
  steering: method ``conditional``).
- :class:`AdapterIntervention` (``adapter``): a peft LoRA adapter (``steertax align``, merge specialists).
- :class:`~steertax.interventions.merge.MergedIntervention`: merged task-vector weights at a scale λ.

Every intervention has a ``key``: a hash of its complete resolved description (every field that can
change a result, and the version of its implementation), and :func:`store_key` is the one function that
turns it into the results store's run id.
"""

from steertax.interventions.adapter import AdapterIntervention, adapter_ready, check_adapter
from steertax.interventions.core import (
    INTERVENTIONS,
    Applied,
    BaseIntervention,
    Intervention,
    register_intervention,
    store_key,
)
from steertax.interventions.steering.intervention import SteeringIntervention, condition_id, vector_id

__all__ = [
    "INTERVENTIONS",
    "Applied",
    "Intervention",
    "BaseIntervention",
    "SteeringIntervention",
    "AdapterIntervention",
    "adapter_ready",
    "check_adapter",
    "condition_id",
    "vector_id",
    "register_intervention",
    "store_key",
]
