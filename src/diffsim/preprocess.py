"""Picklable per-image preprocessing steps: ``step(image, index) -> (3, S, S)`` float32 tensor (or, for
:class:`WithView`, a square and a second view of the original packed into one tensor).

Each metric exposes its step as ``metric.preprocessor``; being small frozen dataclasses (no model
inside), they can run in DataLoader worker processes. ``index`` only names the image in errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import ConfigError
from .images import ImageLike, _load_item, to_unit_resized, to_unit_shorter_side, to_unit_tensor

Preprocess = Callable[[ImageLike, int], torch.Tensor]


@dataclass(frozen=True)
class Resize:
    """Resize to ``size x size`` with Lanczos, or ``resample`` (``crop="center"`` cuts the centred square first).

    ``signed=True`` maps [0, 1] to [-1, 1] (the VAE's input range).
    """

    size: int
    crop: str = "none"
    signed: bool = False
    resample: str = "lanczos"

    def __call__(self, image: ImageLike, index: int = 0) -> torch.Tensor:
        x = to_unit_tensor(image, self.size, self.crop, index, self.resample)
        return x * 2.0 - 1.0 if self.signed else x


@dataclass(frozen=True)
class ResizeCrop:
    """Shortest side to ``resize`` (bicubic), then a centred ``size`` crop, in [0, 1] (CLIP / DINOv2;
    ``torchvision=True``: torchvision's ``Resize`` + ``CenterCrop`` rounding, as CSD)."""

    resize: int
    size: int
    torchvision: bool = False

    def __call__(self, image: ImageLike, index: int = 0) -> torch.Tensor:
        return to_unit_resized(image, self.resize, self.size, index, self.torchvision)


@dataclass(frozen=True)
class ShorterSide:
    """The aspect ratio kept: the shorter side to ``side`` where it is longer, else unchanged (``side=None``:
    the native resolution); (3, H, W) in [0, 1]. Batches hold images of one size only."""

    side: int | None
    resample: str = "bilinear"

    def __call__(self, image: ImageLike, index: int = 0) -> torch.Tensor:
        return to_unit_shorter_side(image, self.side, self.resample, index)


@dataclass(frozen=True)
class ProcessorView:
    """The ORIGINAL image through a Hugging Face image processor (e.g. CLIP's: shortest side to 224,
    bicubic, centre crop, normalisation): its ``pixel_values`` (3, C, C).

    The processor gets an 8-bit RGB PIL image, as the authors' code and diffusers' ``ip_adapter_image``
    feed it: float pictures (tensors, float arrays, 16-bit files) are rounded to 8 bits first, as
    :func:`~diffsim.images.load_image` does (so an image already square at the working size gives the
    processor exactly what the VAE's square would).
    """

    processor: Any

    def __call__(self, image: ImageLike, index: int = 0) -> torch.Tensor:
        item = _load_item(image, index)
        if isinstance(item, torch.Tensor):
            arr = (item.permute(1, 2, 0).float().numpy() * 255.0 + 0.5).astype(np.uint8)
            item = Image.fromarray(arr)
        out = self.processor(images=item.convert("RGB"), return_tensors="pt")
        return out.pixel_values[0].float()


@dataclass(frozen=True)
class WithView:
    """A square step (e.g. :class:`Resize` for the VAE) and a second ``view`` of the same original image
    (e.g. :class:`ProcessorView`), packed into one tensor ``(3, S*S + C*C)`` (:func:`pack_views`).

    One tensor per image lets DataLoader workers, the Ray engine and batching carry both views, and the
    feature cache's content hash cover both: two images that squash to the same square pixels but differ
    in the original (e.g. in aspect ratio) get different keys. :func:`split_views` unpacks a batch.
    """

    square: Preprocess
    view: Preprocess

    def __call__(self, image: ImageLike, index: int = 0) -> torch.Tensor:
        item = _load_item(image, index)  # decoded once, for both views
        return pack_views(self.square(item, index), self.view(item, index))


def pack_views(square: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """Two (3, H, W) views -> one (3, H*W + h*w) tensor (channels kept, pixels flattened)."""
    return torch.cat([square.reshape(square.shape[0], -1), view.reshape(view.shape[0], -1)], dim=1)


def split_views(packed: torch.Tensor, view_side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of packed views (N, 3, S*S + C*C) -> the squares (N, 3, S, S) and the views (N, 3, C, C)."""
    n, c, length = packed.shape
    rest = length - view_side * view_side
    side = math.isqrt(max(rest, 0))
    if rest <= 0 or side * side != rest:
        raise ConfigError(
            f"packed views of length {length} do not hold a square image and a {view_side} x {view_side} view"
        )
    square = packed[..., :rest].reshape(n, c, side, side)
    return square, packed[..., rest:].reshape(n, c, view_side, view_side)
