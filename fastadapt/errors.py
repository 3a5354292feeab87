"""The exceptions fastadapt raises for bad input. Each message names the bad value and what was expected."""

from __future__ import annotations


class FastAdaptError(Exception):
    """Base of every error fastadapt raises on purpose."""


class ConfigError(FastAdaptError, ValueError):
    """An impossible or unknown configuration value (sizes, learning rates, ids, keys)."""


class TaskError(FastAdaptError, ValueError):
    """A task record with missing, extra or invalid fields, or of another family."""


class SpaceError(FastAdaptError, ValueError):
    """Actions or observations of the wrong shape, dtype or range; mismatched spaces."""


class CheckpointError(FastAdaptError, ValueError):
    """A missing, corrupt, truncated or foreign checkpoint."""


class RunDirError(FastAdaptError, ValueError):
    """A run directory that cannot be used as asked (e.g. it holds a finished run)."""


class NonFiniteError(FastAdaptError, FloatingPointError):
    """NaN or infinity in rewards, observations, losses or parameters during training."""
