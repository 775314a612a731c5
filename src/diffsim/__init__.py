"""diffsim: visual similarity from the attention layers of pretrained diffusion models."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    ConfigError,
    DatasetError,
    DiffSimError,
    ImageError,
    LayerError,
    ModelNotFoundError,
    ResourceError,
    TimestepError,
)

if TYPE_CHECKING:
    from .backbones import DEFAULT_MODEL, StableDiffusionBackbone
    from .features import Features
    from .metrics import DiffSim, FeatureMetric, Metric
    from .models import clear_models
    from .registry import MetricInfo, create_metric, list_metrics, load, metric_info, register_metric
    from .segment import ForegroundSegmenter
    from .settings import Settings

# Imported on first use (PEP 562), so that `import diffsim` and `diffsim --help` do not import torch.
_LAZY = {
    "DEFAULT_MODEL": ".backbones",
    "StableDiffusionBackbone": ".backbones",
    "Features": ".features",
    "DiffSim": ".metrics",
    "FeatureMetric": ".metrics",
    "Metric": ".metrics",
    "clear_models": ".models",
    "MetricInfo": ".registry",
    "create_metric": ".registry",
    "list_metrics": ".registry",
    "load": ".registry",
    "metric_info": ".registry",
    "register_metric": ".registry",
    "ForegroundSegmenter": ".segment",
    "Settings": ".settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'diffsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DEFAULT_MODEL",
    "ConfigError",
    "ForegroundSegmenter",
    "DatasetError",
    "DiffSim",
    "DiffSimError",
    "FeatureMetric",
    "Features",
    "ImageError",
    "LayerError",
    "Metric",
    "MetricInfo",
    "ModelNotFoundError",
    "ResourceError",
    "Settings",
    "clear_models",
    "StableDiffusionBackbone",
    "TimestepError",
    "__version__",
    "create_metric",
    "list_metrics",
    "load",
    "metric_info",
    "register_metric",
]
