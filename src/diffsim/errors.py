"""Exceptions raised by diffsim. Every one derives from :class:`DiffSimError`.

The CLI turns any :class:`DiffSimError` into a one-line message and exit code 2.
"""
from __future__ import annotations


class DiffSimError(Exception):
    """Base class of every error diffsim raises on bad input or a missing model."""


class ImageError(DiffSimError, ValueError):
    """An image is missing, unreadable, or a tensor/array has the wrong shape or range."""


class LayerError(DiffSimError, ValueError):
    """A layer name does not exist in the model, or is the wrong kind of layer."""


class TimestepError(DiffSimError, ValueError):
    """A timestep or step index is outside the scheduler's training range."""


class ModelNotFoundError(DiffSimError, OSError):
    """The model could not be found locally nor downloaded."""


class ConfigError(DiffSimError, ValueError):
    """An option has an invalid value (size, dtype, device, similarity, ...)."""


class DatasetError(DiffSimError, ValueError):
    """A benchmark root is missing, does not match the expected layout, or a manifest is invalid."""


class StoreError(DiffSimError, OSError):
    """A gallery feature store is missing, was built with other settings, or a shard file is corrupt."""
