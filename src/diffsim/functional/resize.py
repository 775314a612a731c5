"""On-device, differentiable resizing of batched image tensors (no Pillow).

The cached path (:mod:`diffsim.preprocess`) resizes with Pillow: Lanczos for the diffusion metrics and
LPIPS, bicubic for CLIP / DINOv2 files. Here every resize is ``F.interpolate(mode="bicubic",
antialias=True)`` on the tensor's own device, so gradients flow and GPU batches stay on the GPU. Pixels
already at the working size are passed through untouched, so both paths then see identical pixels
(docs/loss.md gives the measured difference when a resize is needed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ImageError
from ..images import check_crop


def check_batch(x: torch.Tensor, what: str = "images") -> torch.Tensor:
    """``x`` as (N, 3, H, W) floating point; (3, H, W) gets a batch dimension; one channel is repeated."""
    if not torch.is_tensor(x):
        raise ImageError(f"{what} must be a tensor (N, 3, H, W) in [0, 1]; got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ImageError(f"{what} must have shape (N, 3, H, W) with values in [0, 1]; got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ImageError(f"{what} must be a floating-point tensor in [0, 1]; got {x.dtype}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def center_square(x: torch.Tensor) -> torch.Tensor:
    """The centred square of (N, C, H, W), as :func:`diffsim.images` crops it (left = (W - S) // 2)."""
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top : top + s, left : left + s]


def resize_square(x: torch.Tensor, size: int, crop: str = "none") -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size): optional centred square crop, then antialiased bicubic.

    The functional counterpart of :class:`diffsim.preprocess.Resize` (which uses Pillow's Lanczos).
    Output is clamped to [0, 1] like the cached path; pixels already ``size x size`` pass through.
    """
    check_crop(crop)
    if crop == "center":
        x = center_square(x)
    if tuple(x.shape[-2:]) == (size, size):
        return x
    y = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return y.clamp(0.0, 1.0)


def resize_crop(x: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """Shortest side to ``resize`` (antialiased bicubic), then a centred ``crop`` square (CLIP / DINOv2).

    The same computation as :func:`diffsim.images.to_unit_resized` applies to float tensors.
    """
    h, w = x.shape[-2:]
    s = resize / min(w, h)
    nw, nh = max(crop, round(w * s)), max(crop, round(h * s))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp(0.0, 1.0)
    top, left = (x.shape[-2] - crop) // 2, (x.shape[-1] - crop) // 2
    return x[..., top : top + crop, left : left + crop]
