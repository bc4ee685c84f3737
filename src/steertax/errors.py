"""Typed errors. Library code raises these with an actionable message; only the CLI turns
them into one line and exit code 2."""

from __future__ import annotations


class SteertaxError(ValueError):
    """Base class: the message names the problem and the fix."""


class ModelError(SteertaxError):
    """A model could not be found, loaded or understood."""


class DataError(SteertaxError):
    """A data file or item list is missing, empty or malformed."""


class LayerError(SteertaxError):
    """A layer index or range is invalid for the model."""


class StrengthError(SteertaxError):
    """A steering strength is not a finite number (or has the wrong shape)."""


class VectorError(SteertaxError):
    """A steering vector is unreadable or does not fit the model."""


class ConfigError(SteertaxError):
    """A configuration value is unknown or has the wrong type."""
