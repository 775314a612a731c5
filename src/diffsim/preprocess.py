"""Picklable per-image preprocessing steps: ``step(image, index) -> (3, S, S)`` float32 tensor.

Each metric exposes its step as ``metric.preprocessor``; being small frozen dataclasses (no model
inside), they can run in DataLoader worker processes. ``index`` only names the image in errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .images import ImageLike, to_unit_resized, to_unit_tensor


@dataclass(frozen=True)
class Resize:
    """Resize to ``size x size`` with Lanczos (``crop="center"`` cuts the centred square first).

    ``signed=True`` maps [0, 1] to [-1, 1] (the VAE's input range).
    """

    size: int
    crop: str = "none"
    signed: bool = False

    def __call__(self, image: ImageLike, index: int = 0) -> torch.Tensor:
        x = to_unit_tensor(image, self.size, self.crop, index)
        return x * 2.0 - 1.0 if self.signed else x


@dataclass(frozen=True)
class ResizeCrop:
    """Shortest side to ``resize`` (bicubic), then a centred ``size`` crop, in [0, 1] (CLIP / DINOv2)."""

    resize: int
    size: int

    def __call__(self, image: ImageLike, index: int = 0) -> torch.Tensor:
        return to_unit_resized(image, self.resize, self.size, index)
