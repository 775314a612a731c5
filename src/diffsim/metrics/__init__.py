"""Metrics: each turns images into features (``embed``) and features into scores (``compare``)."""
from .base import Metric
from .diffsim_s import DiffSim

__all__ = ["DiffSim", "Metric"]
