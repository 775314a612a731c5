"""diffsim: visual similarity from the attention layers of pretrained diffusion models."""

from ._version import __version__
from .backbones import DEFAULT_MODEL, StableDiffusionBackbone
from .errors import ConfigError, DatasetError, DiffSimError, ImageError, LayerError, ModelNotFoundError, TimestepError
from .features import Features
from .metrics import DiffSim, FeatureMetric, Metric
from .models import clear_models
from .registry import MetricInfo, create_metric, list_metrics, load, metric_info, register_metric
from .segment import ForegroundSegmenter
from .settings import Settings

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
