"""One process-wide cache of loaded models, shared by every metric that names the same checkpoint.

Backbones register what they load under a key (kind, source, device, dtype, ...); a second metric on
the same checkpoint reuses it. :func:`clear_models` frees them (``torch.cuda.empty_cache`` included).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import torch

logger = logging.getLogger(__name__)
T = TypeVar("T")

_MODELS: dict[Hashable, Any] = {}


def shared_model(key: Hashable, load: Callable[[], T], share: bool = True) -> T:
    """The model cached under ``key``, loading it with ``load()`` on first use (``share=False``: always load)."""
    if not share:
        return load()
    if key not in _MODELS:
        _MODELS[key] = load()
    else:
        logger.debug("reusing loaded model %s", key)
    return _MODELS[key]


def loaded_models() -> list[Hashable]:
    """Keys of the models currently held."""
    return list(_MODELS)


def clear_models() -> None:
    """Forget every shared model (metrics that still hold one keep it alive) and free cached GPU memory."""
    _MODELS.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
