"""Backbones turn images into attention features at named layers."""

from .loading import DEFAULT_MODEL, load_components
from .stable_diffusion import StableDiffusionBackbone

__all__ = ["DEFAULT_MODEL", "StableDiffusionBackbone", "load_components"]
