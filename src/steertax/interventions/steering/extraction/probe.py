"""``probe``: the weight vector of a logistic regression separating the pairs' two members, fitted
incrementally (SGD, five passes over each batch) on ±d/2 (each pair centered at its midpoint, no intercept),
scaled by the first batch's RMS half-difference."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from steertax.interventions.steering.extraction.registry import PairStats, register_extraction_method


class ProbeState:
    """The streaming state of ``probe``: an SGD logistic regression updated batch by batch."""

    def __init__(self, dim: int, seed: int) -> None:
        self.seed = seed
        self.model: Any = None
        self.scale: Optional[float] = None

    def update(self, D: np.ndarray, rng: np.random.Generator) -> None:
        from sklearn.linear_model import SGDClassifier

        if self.model is None:
            self.model = SGDClassifier(loss="log_loss", alpha=1e-4, fit_intercept=False, random_state=self.seed)
            self.scale = float(np.sqrt((D**2).sum(1).mean()) / 2) or 1.0
        X = np.concatenate([D / 2, -D / 2]) / self.scale
        y = np.concatenate([np.ones(len(D)), np.zeros(len(D))])
        perm = rng.permutation(len(X))
        for _ in range(5):
            self.model.partial_fit(X[perm], y[perm], classes=np.array([0.0, 1.0]))


@register_extraction_method("probe", doc="logistic-regression weight on the pair differences (SGD, streamed)", state=ProbeState)
def probe(stats: PairStats) -> np.ndarray:
    return stats.state.model.coef_.reshape(-1).astype(np.float64)
