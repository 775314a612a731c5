"""Metrics: each turns images into features (``embed``) and features into scores (``compare``)."""

from .base import FeatureMetric, FeatureSettings, Metric, RunSettings
from .diffsim_s import DiffSim, DiffSimSettings

__all__ = ["DiffSim", "DiffSimSettings", "FeatureMetric", "FeatureSettings", "Metric", "RunSettings"]
