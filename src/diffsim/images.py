"""Image loading and preprocessing: paths, PIL images, numpy arrays or tensors to a pixel batch.

Preprocessing follows the DiffSim paper and the authors' code: EXIF transpose, RGB, resize to
``size x size`` with Lanczos (the aspect ratio is *not* kept), then scale to [-1, 1]. With
``crop="center"`` the largest centred square is cut first, so the aspect ratio is kept.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ConfigError, ImageError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]
ImagesLike = Union[ImageLike, Sequence[ImageLike]]

CROPS = ("none", "center")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file: EXIF orientation applied, converted to RGB. Raises :class:`ImageError`."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image file not found: {p}")
    if p.is_dir():
        raise ImageError(f"expected an image file but got a directory: {p}")
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot read image {p}: {exc} (is the file truncated or not an image?)") from exc


def _square(im: Image.Image, crop: str) -> Image.Image:
    if crop == "center":
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
    return im


def _pil_to_unit(im: Image.Image, size: int, crop: str) -> torch.Tensor:
    im = _square(im.convert("RGB"), crop)
    if im.size != (size, size):
        im = im.resize((size, size), Image.LANCZOS)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _float_to_unit(x: torch.Tensor, size: int, crop: str, what: str) -> torch.Tensor:
    """(3,H,W) float in [0,1] -> (3,size,size) with a float Lanczos resize (no uint8 quantisation)."""
    if tuple(x.shape[1:]) == (size, size):
        return x.float()
    chans = [Image.fromarray(c.float().cpu().numpy(), mode="F") for c in x]
    chans = [_square(c, crop).resize((size, size), Image.LANCZOS) for c in chans]
    out = torch.from_numpy(np.stack([np.asarray(c, dtype=np.float32) for c in chans]))
    return out.clamp_(0.0, 1.0)


def _check_range(x: torch.Tensor, what: str) -> None:
    if not torch.isfinite(x).all():
        raise ImageError(f"{what} contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        hint = " (it looks like [-1, 1]: pass (x + 1) / 2)" if lo < 0 else " (it looks like [0, 255]: divide by 255)"
        raise ImageError(f"{what} must hold values in [0, 1]; got min {lo:.4g}, max {hi:.4g}{hint}")


def _tensor_items(x: torch.Tensor, what: str) -> list[torch.Tensor]:
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ImageError(f"{what} must have shape (N, 3, H, W) or (3, H, W) with values in [0, 1]; got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ImageError(f"{what} must be a float tensor in [0, 1]; got dtype {x.dtype}")
    _check_range(x, what)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return list(x.detach().cpu().float())


def _array_items(a: np.ndarray, what: str) -> list[Image.Image | torch.Tensor]:
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise ImageError(f"{what} must have shape (H, W), (H, W, C) or (N, H, W, C) with C in 1, 3, 4; got {a.shape}")
    if a.dtype == np.uint8:
        return [Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im) for im in a]
    if np.issubdtype(a.dtype, np.floating):
        t = torch.from_numpy(np.ascontiguousarray(a[..., :3], dtype=np.float32)).permute(0, 3, 1, 2)
        return _tensor_items(t, what)
    raise ImageError(f"{what} must be uint8 in [0, 255] or float in [0, 1]; got dtype {a.dtype}")


def describe(image: ImageLike, index: int) -> str:
    """A short name for an image in messages and outputs (the path, or '<tensor #i>')."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"<{type(image).__name__} #{index}>"


def as_list(images: ImagesLike) -> list[ImageLike]:
    """Wrap a single image in a list; split a batched tensor/array; keep a list as is."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, torch.Tensor):
        return list(images) if images.dim() == 4 else [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    return list(images)


def is_single(images: ImagesLike) -> bool:
    """True if ``images`` denotes one image rather than a batch."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return True
    if isinstance(images, torch.Tensor):
        return images.dim() == 3
    if isinstance(images, np.ndarray):
        return images.ndim in (2, 3)
    return False


def to_unit_tensor(image: ImageLike, size: int, crop: str = "none", index: int = 0) -> torch.Tensor:
    """One image to a (3, size, size) float32 tensor in [0, 1]."""
    item = _load_item(image, index)
    if isinstance(item, Image.Image):
        return _pil_to_unit(item, size, crop)
    return _float_to_unit(item, size, crop, describe(image, index))


def _load_item(image: ImageLike, index: int) -> Image.Image | torch.Tensor:
    """Validate one input: an RGB PIL image (files, PIL, uint8 arrays) or a (3, H, W) float tensor in [0, 1]."""
    what = describe(image, index)
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return (ImageOps.exif_transpose(image) or image).convert("RGB")
    if isinstance(image, np.ndarray):
        (item,) = _array_items(image, what)
        return item
    if isinstance(image, torch.Tensor):
        (item,) = _tensor_items(image, what)
        return item
    raise ImageError(f"{what}: unsupported image type {type(image).__name__}; expected a path, PIL image, "
                     "numpy array or float tensor in [0, 1]")


def to_unit_resized(image: ImageLike, resize: int, crop: int, index: int = 0) -> torch.Tensor:
    """One image to (3, crop, crop) in [0, 1]: shortest side to ``resize`` (bicubic), then a centred crop.

    The CLIP / DINOv2 processors' geometry, applied with PIL for files and uint8 data and with an
    antialiased torch bicubic for float tensors (no uint8 quantisation).
    """
    item = _load_item(image, index)
    if isinstance(item, Image.Image):
        w, h = item.size
        s = resize / min(w, h)
        nw, nh = max(crop, round(w * s)), max(crop, round(h * s))
        item = item.convert("RGB").resize((nw, nh), Image.BICUBIC)
        x = torch.from_numpy(np.asarray(item, dtype=np.float32) / 255.0).permute(2, 0, 1)
    else:
        h, w = item.shape[1:]
        s = resize / min(w, h)
        nw, nh = max(crop, round(w * s)), max(crop, round(h * s))
        x = torch.nn.functional.interpolate(item[None].float(), size=(nh, nw), mode="bicubic", antialias=True,
                                            align_corners=False)[0].clamp_(0.0, 1.0)
    top, left = (x.shape[1] - crop) // 2, (x.shape[2] - crop) // 2
    return x[:, top : top + crop, left : left + crop].contiguous()


def check_size(size: int, multiple: int = 8) -> int:
    """Validate the working resolution."""
    if isinstance(size, bool) or not isinstance(size, int) or size < multiple or size % multiple:
        raise ConfigError(f"size must be a positive multiple of {multiple} (e.g. 512); got {size!r}")
    return size


def check_crop(crop: str) -> str:
    if crop not in CROPS:
        raise ConfigError(f"crop must be one of {', '.join(CROPS)}; got {crop!r}")
    return crop


def content_hash(pixels: torch.Tensor) -> str:
    """Stable hash of one preprocessed image (3, S, S); identical pixels give identical keys."""
    arr = pixels.detach().cpu().contiguous().float().numpy()
    h = hashlib.blake2b(arr.tobytes(), digest_size=16)
    h.update(str(arr.shape).encode())
    return h.hexdigest()
