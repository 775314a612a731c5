"""Foreground masks: load them (files, PIL, arrays, tensors) and bring them to a token grid.

A mask is (H, W) with values in [0, 1] (1 = foreground); uint8 masks are divided by 255 and files
are read as grayscale. ``None`` means "no mask" (all ones). Masks follow the image's geometry: a
plain resize, or the same centred square crop (``crop="center"``) before resizing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import ImageError

MaskLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor | None


def load_mask(mask: MaskLike, index: int = 0) -> torch.Tensor | None:
    """One mask as a float (H, W) tensor in [0, 1], or None for no mask."""
    if mask is None:
        return None
    if isinstance(mask, (str, os.PathLike)):
        p = Path(mask)
        if not p.is_file():
            raise ImageError(f"mask file not found: {p}")
        with Image.open(p) as im:
            mask = im.convert("L")
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("L"))
    if isinstance(mask, np.ndarray):
        arr = mask
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        mask = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if not isinstance(mask, torch.Tensor):
        raise ImageError(
            f"mask #{index}: unsupported type {type(mask).__name__}; expected a path, PIL image, "
            "array or tensor (H, W) in [0, 1]"
        )
    m = mask.detach().float().cpu()
    if m.dim() == 3 and m.shape[0] == 1:
        m = m[0]
    if m.dim() != 2:
        raise ImageError(f"mask #{index} must have shape (H, W) or (1, H, W); got {tuple(mask.shape)}")
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise ImageError(f"mask #{index} must hold values in [0, 1] (uint8 masks: 0..255)")
    return m


def load_masks(masks: MaskLike | Sequence[MaskLike], n: int) -> list[torch.Tensor | None]:
    """``n`` masks from one mask (broadcast) or a sequence of ``n`` masks (None entries allowed)."""
    if (
        masks is None
        or isinstance(masks, (str, os.PathLike, Image.Image))
        or (isinstance(masks, (np.ndarray, torch.Tensor)) and masks.ndim == 2)
    ):
        items: list[MaskLike] = [masks] * n
    else:  # a batched array / tensor, or a sequence: one per image
        items = list(masks)
    if len(items) != n:
        raise ImageError(f"got {len(items)} masks for {n} images: give one mask per image (None for none)")
    return [load_mask(m, i) for i, m in enumerate(items)]


def to_tokens(mask: torch.Tensor | None, side: int, crop: str = "none") -> torch.Tensor:
    """A mask averaged onto a ``side x side`` token grid, flattened (side*side,); None -> ones."""
    if mask is None:
        return torch.ones(side * side)
    if crop == "center":
        h, w = mask.shape
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        mask = mask[top : top + s, left : left + s]
    return F.adaptive_avg_pool2d(mask[None, None], side).flatten()
