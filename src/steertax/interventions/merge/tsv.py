"""TSV-M (Task Singular Vector Merging, Gargiulo et al., CVPR 2025) and steertax's reading of R-TSVM (Yang et
al. 2025); see docs/MERGING.md for what comes from which paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from steertax.errors import DataError
from steertax.interventions.merge.registry import param, register_merge_method

__all__ = ["thin_svd", "tsvm_merge", "rtsvm_merge", "outlier_ratio", "energy_rank", "RTSVMParams"]


def thin_svd(d: torch.Tensor, probe: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``torch.linalg.svd(d, full_matrices=False)`` in float64, fast when ``d`` has low rank (a LoRA task vector
    has rank <= r): the range of ``d`` from a seeded Gaussian probe of ``probe`` columns; when the probe holds
    all of ``d`` up to ``d``'s own rounding (residual <= 100 eps of its dtype, relative), the SVD of the small
    projection, else the full SVD. The directions left out are rounding noise far below :func:`numerical_rank`'s
    cut."""
    rtol = max(1e-12, 100 * torch.finfo(d.dtype).eps) if d.is_floating_point() else 1e-12
    d = d.double()
    m, n = d.shape
    if min(m, n) <= 2 * probe:
        return torch.linalg.svd(d, full_matrices=False)
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(d @ torch.randn(n, probe, dtype=d.dtype, generator=g).to(d.device))
    b = q.T @ d
    nrm = torch.linalg.matrix_norm(d)
    if nrm == 0 or torch.linalg.matrix_norm(d - q @ b) <= rtol * nrm:
        ub, s, vh = torch.linalg.svd(b, full_matrices=False)
        return q @ ub, s, vh
    return torch.linalg.svd(d, full_matrices=False)


def _polar(x: torch.Tensor) -> torch.Tensor:
    """The orthonormal matrix nearest ``x`` (orthogonal Procrustes): P Qᵀ from x = P Σ Qᵀ."""
    p, _, qh = torch.linalg.svd(x, full_matrices=False)
    return p @ qh


def tsvm_merge(deltas: Sequence[torch.Tensor], weights: Sequence[float], ranks: Sequence[int] | None = None) -> torch.Tensor:
    """TSV-M of one matrix: each weighted delta's top-k SVD triplets, concatenated, the U and V blocks
    replaced by their polar factors, recombined. ``ranks``: k per task (default ⌊min(m, n)/T⌋)."""
    T = len(deltas)
    m, n = deltas[0].shape
    full = min(m, n)
    ks = list(ranks) if ranks is not None else [max(1, full // T)] * T
    us, ss, vs = [], [], []
    for d, w, k in zip(deltas, weights, ks, strict=True):
        u, s, vh = thin_svd(float(w) * d)
        # singular values at the level of the delta's own rounding carry no direction (a LoRA delta has rank <= r):
        # the numerical rank cut, max(m, n)·eps of its dtype relative to the largest, leaves them out
        cut = max(m, n) * torch.finfo(d.dtype).eps * (float(s[0]) if len(s) else 0.0)
        k = min(int(k), int((s > cut).sum()))
        us.append(u[:, :k])
        ss.append(s[:k])
        vs.append(vh[:k])
    U, S, Vh = torch.cat(us, 1), torch.cat(ss), torch.cat(vs, 0)
    if U.shape[1] == 0:  # no task changes this matrix
        return torch.zeros_like(deltas[0])
    if U.shape[1] > full:
        raise DataError(f"TSV-M keeps {U.shape[1]} directions in a {m}x{n} matrix: the ranks must sum to at most {full}")
    return (_polar(U) @ torch.diag(S) @ _polar(Vh.T).T).to(deltas[0].dtype)


def outlier_ratio(d: torch.Tensor, m: float = 5.0) -> float:
    """The fraction of entries whose magnitude exceeds ``m`` times the mean magnitude (OWL's layerwise
    outlier ratio, here on a task vector)."""
    a = d.abs()
    return float((a > m * a.mean()).float().mean())


def energy_rank(d: torch.Tensor, energy: float = 0.9) -> int:
    """The smallest rank holding ``energy`` of ``d``'s squared singular values."""
    s = thin_svd(d)[1]
    c = torch.cumsum(s**2, 0)
    if float(c[-1]) == 0:
        return 1
    return int(torch.searchsorted(c, energy * c[-1]).item()) + 1


def rtsvm_merge(deltas: Sequence[torch.Tensor], weights: Sequence[float], *, outlier_m: float = 5.0, energy: float = 0.9) -> torch.Tensor:
    """R-TSVM as steertax reads it (see the module doc): outlier-aware reweighting of the tasks, a
    rank per task from its spectrum's energy, then TSV-M."""
    full = min(deltas[0].shape)
    live = [i for i, d in enumerate(deltas) if bool(d.any())]  # a specialist that leaves this matrix alone takes no part
    D = {i: outlier_ratio(deltas[i], outlier_m) for i in live}
    mean_d = sum(D.values()) / len(live) if live else 0.0
    # factor 2·D̄/(D_t + D̄) in (0, 2]: 1 for a task with the average outlier ratio, 2 with none, -> 0 with
    # many; renormalized so the weights keep their sum
    f = {i: 2 * mean_d / (D[i] + mean_d) if mean_d > 0 else 1.0 for i in live}
    total = sum(float(weights[i]) for i in live)
    raw = {i: float(weights[i]) * f[i] for i in live}
    norm = total / sum(raw.values()) if raw and sum(raw.values()) != 0 else 1.0
    w = [raw[i] * norm if i in raw else 0.0 for i in range(len(deltas))]
    ks = [energy_rank(d, energy) if bool(d.any()) else 0 for d in deltas]
    if sum(ks) > full:  # cap: shrink every task's rank in proportion
        ks = [max(1, int(k * full / sum(ks))) for k in ks]
    return tsvm_merge(deltas, w, ks)


@register_merge_method("tsvm", version=2, doc="Task Singular Vector Merging (Gargiulo et al. 2025); v2: numerical-rank cut")
def _tsvm(ds: list[torch.Tensor], ws: list[float], p: Any) -> torch.Tensor:
    if ds[0].ndim != 2:  # a norm or bias of a full-model specialist has no singular vectors: the tasks' mean
        return _mean(ds, ws)
    return tsvm_merge(ds, ws)


def _mean(ds: list[torch.Tensor], ws: list[float]) -> torch.Tensor:
    """Non-matrix parameters (norms, biases): the mean over tasks of the weighted deltas, as the TSV-M reference does."""
    return sum((float(w) * d for w, d in zip(ws, ds, strict=True)), torch.zeros_like(ds[0])) / len(ds)


@dataclass(frozen=True)
class RTSVMParams:
    outlier_m: float = param(5.0, "an entry is an outlier above outlier_m times its task vector's mean magnitude (OWL's M)")
    energy: float = param(0.9, "each task keeps the smallest rank holding this share of its squared singular values, in (0, 1]")


def _check_rtsvm(p: RTSVMParams) -> str | None:
    if not p.outlier_m > 0:
        return f"outlier_m: {p.outlier_m:g} must be positive (a multiple of the mean magnitude, e.g. 5)"
    if not 0 < p.energy <= 1:
        return f"energy: {p.energy:g} must be in (0, 1]: the share of the squared singular values kept"
    return None


@register_merge_method(
    "rtsvm",
    doc="steertax's reading of R-TSVM (Yang et al. 2025): outlier weighting + energy rank, then TSV-M",
    params=RTSVMParams,
    check=_check_rtsvm,
)
def _rtsvm(ds: list[torch.Tensor], ws: list[float], p: RTSVMParams) -> torch.Tensor:
    if ds[0].ndim != 2:
        return _mean(ds, ws)
    return rtsvm_merge(ds, ws, outlier_m=p.outlier_m, energy=p.energy)
