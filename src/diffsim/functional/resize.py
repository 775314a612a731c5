"""On-device, differentiable resizing of batched image tensors (no Pillow).

The cached path (:mod:`diffsim.preprocess`) resizes float tensors with Pillow's Lanczos filter (one
channel at a time, mode "F", clipped to [0, 1] between the two passes as Pillow's 8-bit path is) for the
diffusion metrics and LPIPS, and with Pillow's bicubic (clipped the same way) for CLIP / DINOv2. Here a
resize runs on the tensor's own device and keeps the autograd graph:

* ``method="lanczos"`` (default): Pillow's own resampling written as two matrix products (the same
  filter, support, window rounding and normalisation as Pillow's ``precompute_coeffs``), so it gives
  Pillow's float pixels to about 1e-6;
* ``method="bicubic"``: ``F.interpolate(mode="bicubic", antialias=True)`` (a = -0.75, not Lanczos),
  which differs from Pillow's Lanczos by about 1e-3 on average (docs/loss.md).

Pixels already at the working size are passed through untouched.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from ..bounds import check_crop
from ..errors import ConfigError, ImageError


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


METHODS = ("lanczos", "bicubic")
_SUPPORT = {"lanczos": 3.0, "bicubic": 2.0}


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def _filter(kind: str, x: float) -> float:
    """Pillow's ``lanczos_filter`` and ``bicubic_filter`` (a = -0.5)."""
    if kind == "lanczos":
        return _sinc(x) * _sinc(x / 3.0) if -3.0 <= x < 3.0 else 0.0
    x, a = abs(x), -0.5
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


@lru_cache(maxsize=64)
def pillow_weights(n_in: int, n_out: int, kind: str = "lanczos") -> torch.Tensor:
    """(n_out, n_in) float64 resampling matrix of Pillow's ``precompute_coeffs`` for one axis."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = _SUPPORT[kind] * filterscale
    w = torch.zeros(n_out, n_in, dtype=torch.float64)
    for xx in range(n_out):
        center = (xx + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)  # C casts truncate toward zero, as int() does
        hi = min(int(center + support + 0.5), n_in)
        k = [_filter(kind, (x - center + 0.5) / filterscale) for x in range(lo, hi)]
        total = sum(k)
        w[xx, lo:hi] = torch.tensor([v / total for v in k] if total != 0.0 else k, dtype=torch.float64)
    return w


def pillow_resize(x: torch.Tensor, size: tuple[int, int], kind: str = "lanczos") -> torch.Tensor:
    """(N, C, H, W) -> (N, C, *size) as the cached path resizes a float image
    (:func:`diffsim.images._resize_channel`): Pillow's horizontal pass, a clip to [0, 1] (as Pillow's
    8-bit path clips between its passes), the vertical pass, a clip; each pass only where that side
    changes; on ``x``'s device, differentiable."""
    h, w = x.shape[-2:]
    dt = torch.promote_types(torch.float32, x.dtype)
    y = x.to(dt)
    if size[1] != w:
        y = (y @ pillow_weights(w, size[1], kind).to(y.device, dt).T).clamp(0.0, 1.0)
    if size[0] != h:
        y = pillow_weights(h, size[0], kind).to(y.device, dt) @ y
    return y.clamp(0.0, 1.0)


def resize_square(x: torch.Tensor, size: int, crop: str = "none", method: str = "lanczos") -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size): optional centred square crop, then ``method`` (see above).

    The functional counterpart of :class:`diffsim.preprocess.Resize`. Output is clamped to [0, 1] like
    the cached path; pixels already ``size x size`` pass through.
    """
    check_crop(crop)
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if crop == "center":
        x = center_square(x)
    if tuple(x.shape[-2:]) == (size, size):
        return x
    if method == "lanczos":
        y = pillow_resize(x, (size, size))
    else:
        y = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return y.clamp(0.0, 1.0)


def resize_crop(x: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """Shortest side to ``resize`` (Pillow's bicubic, clipped between passes), then a centred ``crop``
    square (CLIP / DINOv2).

    The same computation as :func:`diffsim.images.to_unit_resized` applies to float tensors.
    """
    h, w = x.shape[-2:]
    s = resize / min(w, h)
    nw, nh = max(crop, round(w * s)), max(crop, round(h * s))
    if (nh, nw) != (h, w):
        x = pillow_resize(x, (nh, nw), "bicubic")
    top, left = (x.shape[-2] - crop) // 2, (x.shape[-1] - crop) // 2
    return x[..., top : top + crop, left : left + crop]


def clip_pixels(processor: object, pixels: torch.Tensor) -> torch.Tensor:
    """A CLIP image processor's output computed on the device and differentiably from (N, 3, S, S) in [0, 1]:
    shortest side to the processor's size (antialiased bicubic; the processor: Pillow on uint8), centre
    crop, the processor's mean / std."""
    proc: Any = processor
    size = proc.size["shortest_edge"]
    x = resize_crop(pixels, int(size), int(proc.crop_size["height"]))
    mean = torch.tensor(proc.image_mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(proc.image_std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
