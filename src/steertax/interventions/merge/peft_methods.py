"""Task arithmetic, TIES and DARE, by peft's ``merge_utils`` (the field's implementations).

- ``task_arithmetic``: Σ w_t τ_t (Ilharco et al. 2023).
- ``ties``: trim each τ_t to its top ``density`` fraction by magnitude, elect each entry's sign by the larger
  total mass, average the entries that agree (Yadav et al. 2023; peft elects the sign on the unweighted,
  trimmed deltas and applies w_t after the election).
- ``dare``: drop each entry with probability 1 − ``density`` and rescale the rest by 1/``density`` (Yu et al.
  2024), then combine linearly (``combine: linear``) or TIES-style (``combine: ties``); drawn from torch's
  global generator, which ``merge_deltas`` seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from steertax.interventions.merge.registry import param, register_merge_method

__all__ = ["ties_untrimmed", "TiesParams", "DareParams"]


def ties_untrimmed(ds: list[torch.Tensor], wt: torch.Tensor) -> torch.Tensor:
    """TIES without trimming (density 1), the same steps as peft's ``ties`` (which warns and skips at 1)."""
    from peft.utils import merge_utils as mu

    stacked = torch.stack(ds, dim=0)
    mask = mu.calculate_majority_sign_mask(stacked, method="total")
    return mu.disjoint_merge(mu.reshape_weight_task_tensors(stacked, wt) * stacked, mask)


def _ties_weighted(ds: list[torch.Tensor], wt: torch.Tensor, density: float) -> torch.Tensor:
    from peft.utils import merge_utils as mu

    return mu.ties(ds, wt, density) if density < 1 else ties_untrimmed(ds, wt)


@dataclass(frozen=True)
class TiesParams:
    density: float = param(0.5, "the fraction of each task vector kept (its largest entries by magnitude), in (0, 1]")


@dataclass(frozen=True)
class DareParams:
    density: float = param(0.5, "the fraction of each task vector's entries kept (the rest dropped at random), in (0, 1]")
    combine: str = param("linear", "how the rescaled task vectors are combined: linear (weighted sum) or ties")


def _check_density(p: TiesParams | DareParams) -> str | None:
    return None if 0 < p.density <= 1 else f"density: {p.density:g} must be in (0, 1]: the fraction of each task vector kept"


def _check_dare(p: DareParams) -> str | None:
    return _check_density(p) or (None if p.combine in ("linear", "ties") else f"combine: {p.combine!r} is not linear or ties")


@register_merge_method("task_arithmetic", doc="Σ w_t τ_t (Ilharco et al. 2023), peft's merge_utils.task_arithmetic")
def _task_arithmetic(ds: list[torch.Tensor], ws: list[float], p: object) -> torch.Tensor:
    from peft.utils import merge_utils as mu

    return mu.task_arithmetic(ds, torch.tensor(ws, dtype=torch.float32))


@register_merge_method(
    "ties",
    doc="trim to density, elect signs, disjoint mean (Yadav et al. 2023), peft's merge_utils.ties",
    params=TiesParams,
    check=_check_density,
)
def _ties(ds: list[torch.Tensor], ws: list[float], p: TiesParams) -> torch.Tensor:
    return _ties_weighted(ds, torch.tensor(ws, dtype=torch.float32), p.density)


@register_merge_method(
    "dare",
    doc="drop 1 − density, rescale, combine linear or TIES (Yu et al. 2024), peft's dare_linear / dare_ties",
    params=DareParams,
    check=_check_dare,
)
def _dare(ds: list[torch.Tensor], ws: list[float], p: DareParams) -> torch.Tensor:
    from peft.utils import merge_utils as mu

    wt = torch.tensor(ws, dtype=torch.float32)
    if p.density == 1:  # nothing dropped: DARE is its combination step alone
        return mu.task_arithmetic(ds, wt) if p.combine == "linear" else ties_untrimmed(ds, wt)
    return (mu.dare_linear if p.combine == "linear" else mu.dare_ties)(ds, wt, p.density)
