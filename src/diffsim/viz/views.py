"""What to draw for an input image: the region the metric saw, as a PIL image, and thumbnails."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from ..images import ImageLike, _load_item, describe

MAX_SIDE = 512  # images are drawn at most this many pixels on their longer side


def model_view(image: ImageLike, crop: str = "none", index: int = 0, max_side: int = MAX_SIDE) -> Image.Image:
    """The part of ``image`` the metric reads, in its own aspect ratio (at most ``max_side`` px).

    With ``crop="none"`` the metric squashes the whole image to a square, so a token map stretched over
    the whole image lines up with it; with ``crop="center"`` only the centred square is read.
    """
    item = _load_item(image, index)
    if isinstance(item, torch.Tensor):
        arr = (item.clamp(0, 1).permute(1, 2, 0).cpu().float().numpy() * 255.0).round().astype(np.uint8)
        item = Image.fromarray(arr)
    if crop == "center":
        w, h = item.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        item = item.crop((left, top, left + s, top + s))
    scale = max_side / max(item.size)
    if scale < 1:
        item = item.resize(
            (max(1, round(item.width * scale)), max(1, round(item.height * scale))), Image.Resampling.LANCZOS
        )
    return item


def thumbnail(image: ImageLike, side: int = 96, index: int = 0) -> Image.Image:
    """A square centre-cropped thumbnail, ``side`` pixels."""
    return model_view(image, "center", index, max_side=max(side, 1)).resize((side, side), Image.Resampling.LANCZOS)


def label(image: ImageLike, index: int, width: int = 18) -> str:
    """A short label: the file name (ellipsised to ``width`` characters) or '#i'."""
    name = os.path.basename(str(image)) if isinstance(image, (str, os.PathLike)) else f"#{index}"
    if not name:
        name = describe(image, index)
    return name if len(name) <= width else name[: width - 1] + "…"
