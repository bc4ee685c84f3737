"""``mean_diff``: the difference of the class means, mean(aligned) − mean(misaligned) = the mean pair difference."""

from __future__ import annotations

import numpy as np

from steertax.interventions.steering.extraction.registry import PairStats, register_extraction_method


@register_extraction_method("mean_diff", doc="difference of the class means (the mean aligned-minus-misaligned difference)")
def mean_diff(stats: PairStats) -> np.ndarray:
    return stats.sum_d / stats.n
