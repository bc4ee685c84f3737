"""steertax: inference-time steering of language models, measuring what steering buys and what it costs."""

from __future__ import annotations

__version__ = "0.1.0"

from steertax import tasks  # noqa: E402
from steertax.errors import ConfigError, DataError, LayerError, ModelError, SteertaxError, StrengthError, VectorError  # noqa: E402
from steertax.generation import generate  # noqa: E402
from steertax.interventions.steering.extract import extract_vector  # noqa: E402
from steertax.interventions.steering.hooks import steer  # noqa: E402
from steertax.interventions.steering.pairs import ContrastPair, PairSet, get_pairs, harmful_harmless_pairs, refusal_pairs  # noqa: E402
from steertax.interventions.steering.vectors import SteeringVector  # noqa: E402
from steertax.models import find_blocks, format_chat, load_model  # noqa: E402
from steertax.tasks import evaluate  # noqa: E402

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
