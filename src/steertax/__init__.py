"""steertax: inference-time steering of language models, measuring what steering buys and what it costs."""

from __future__ import annotations

from steertax import tasks
from steertax._version import __version__
from steertax.errors import ConfigError, DataError, LayerError, ModelError, SteertaxError, StrengthError, VectorError
from steertax.generation import generate
from steertax.interventions.steering.extract import extract_vector
from steertax.interventions.steering.hooks import steer
from steertax.interventions.steering.pairs import ContrastPair, PairSet, get_pairs, harmful_harmless_pairs, refusal_pairs
from steertax.interventions.steering.vectors import SteeringVector
from steertax.models import find_blocks, format_chat, load_model
from steertax.tasks import evaluate

__all__ = [
    "__version__",
    "load_model",
    "find_blocks",
    "format_chat",
    "ContrastPair",
    "PairSet",
    "get_pairs",
    "refusal_pairs",
    "harmful_harmless_pairs",
    "SteeringVector",
    "steer",
    "extract_vector",
    "generate",
    "tasks",
    "evaluate",
    "SteertaxError",
    "ModelError",
    "DataError",
    "LayerError",
    "StrengthError",
    "VectorError",
    "ConfigError",
]
