"""Weight averaging (the "model soup" of Wortsman et al., ICML 2022): the weighted mean of the task
vectors, Σ w_t τ_t / Σ w_t. At equal weights it is task arithmetic divided by the number of specialists,
so "scale 1" is the average specialist rather than their sum.

This file is the worked example of docs/DESIGN.md's "Adding a merge method": one function of one matrix's
task vectors, registered by name; nothing else in steertax changes. It has no parameters of its own (a
method with some declares them: ``params=`` a dataclass of :func:`~steertax.interventions.merge.registry.param`
fields, and ``check=``; see ``peft_methods.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from steertax.interventions.merge.registry import register_merge_method


@register_merge_method("average", version=1, doc="weighted mean of the task vectors (model soup, Wortsman et al. 2022)")
def average(deltas: list[torch.Tensor], weights: list[float], params: Any) -> torch.Tensor:
    total = sum(weights)
    if total == 0:
        raise ValueError("average: the specialists' weights sum to 0; give weights with a non-zero sum")
    return sum(w * d for w, d in zip(weights, deltas, strict=True)) / total  # type: ignore[return-value]
