"""Vector extraction methods, one module each, registered by name (:mod:`.registry`): how one layer's paired
activations become a steering direction. Importing this package registers the built-in ones: ``pca`` (the
default), ``mean_diff`` and ``probe``."""

from steertax.interventions.steering.extraction import pca  # the default first: listings and errors name it first

# isort: split
from steertax.interventions.steering.extraction import mean_diff, probe
from steertax.interventions.steering.extraction.registry import (
    EXTRACTION_METHODS,
    STATISTICS,
    ExtractionMethod,
    PairStats,
    StreamState,
    extraction_methods,
    get_extraction_method,
    register_extraction_method,
)

__all__ = [
    "EXTRACTION_METHODS",
    "STATISTICS",
    "ExtractionMethod",
    "PairStats",
    "StreamState",
    "extraction_methods",
    "get_extraction_method",
    "register_extraction_method",
    "mean_diff",
    "pca",
    "probe",
]
