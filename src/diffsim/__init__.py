"""diffsim: visual similarity from the attention layers of pretrained diffusion models."""
from ._version import __version__
from .backbones import DEFAULT_MODEL, StableDiffusionBackbone
from .errors import (ConfigError, DatasetError, DiffSimError, ImageError, LayerError, ModelNotFoundError,
                     TimestepError)
from .features import Features
from .metrics import DiffSim, Metric
from .segment import ForegroundSegmenter
from .registry import MetricInfo, create_metric, list_metrics, metric_info, register_metric

__all__ = [
    "DEFAULT_MODEL", "ConfigError", "ForegroundSegmenter", "DatasetError", "DiffSim", "DiffSimError", "Features", "ImageError", "LayerError", "Metric",
    "MetricInfo", "ModelNotFoundError", "StableDiffusionBackbone", "TimestepError", "__version__", "create_metric",
    "list_metrics", "metric_info", "register_metric",
]
