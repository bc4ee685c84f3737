"""``pca`` (RepE, Zou et al. 2023): the first principal component of the pair differences taken in random
order (each difference's sign flipped by a seeded coin, so the component is the axis the pairs spread along
rather than their mean)."""

from __future__ import annotations

import numpy as np

from steertax.interventions.steering.extraction.registry import PairStats, register_extraction_method


@register_extraction_method(
    "pca", doc="first principal component of the pair differences in random order (RepE)", stats=("dd",), min_pairs=2
)
def pca(stats: PairStats) -> np.ndarray:
    assert stats.sum_dd is not None  # kept because this method declares stats=("dd",)
    mu = stats.sum_sd / stats.n
    cov = stats.sum_dd / stats.n - np.outer(mu, mu)
    _, vecs = np.linalg.eigh(cov)
    return vecs[:, -1].copy()
