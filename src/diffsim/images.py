"""Image loading and preprocessing: paths, PIL images, numpy arrays or tensors to a pixel batch.

Preprocessing follows the DiffSim paper and the authors' code: EXIF transpose, RGB, resize to
``size x size`` with Lanczos (the aspect ratio is *not* kept), then scale to [-1, 1]. With
``crop="center"`` the largest centred square is cut first, so the aspect ratio is kept.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ConfigError, ImageError
from .extensions import IMAGE_EXTENSIONS  # noqa: F401 - re-exported

ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor
ImagesLike = ImageLike | Sequence[ImageLike]


# ------------------------------------------------------------------ pixel limit
DEFAULT_MAX_PIXELS = 100_000_000  # 10000 x 10000; a 16-bit or float image of that size needs ~1.2 GB as float32
MAX_PIXELS_ENV = "DIFFSIM_MAX_PIXELS"
_max_pixels: int | None = None  # set by set_max_pixels(); None: the environment variable or the default
_PIL_LOCK = threading.Lock()


def set_max_pixels(limit: int | None) -> None:
    """Largest image file (width x height) diffsim decodes; ``None`` restores the default.

    The default is ``DIFFSIM_MAX_PIXELS`` from the environment, else 100 million pixels. A larger file
    raises :class:`ImageError` (benchmarks record it and go on) instead of exhausting memory.
    """
    global _max_pixels
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"max_pixels must be a positive integer; got {limit!r}")
    _max_pixels = limit


def max_pixels() -> int:
    """The pixel limit in force (see :func:`set_max_pixels`)."""
    if _max_pixels is not None:
        return _max_pixels
    env = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not env:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(env)
        if value < 1:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{MAX_PIXELS_ENV} must be a positive integer; got {env!r}") from None
    return value


def _check_pixels(size: tuple[int, int], what: str, limit: int | None = None) -> None:
    w, h = size
    limit = max_pixels() if limit is None else limit
    if w * h > limit:
        raise ImageError(
            f"image {what} is {w} x {h} = {w * h:,} pixels, above the limit of {limit:,} pixels",
            hint=f"raise the limit with diffsim.images.set_max_pixels({w * h}) or {MAX_PIXELS_ENV}={w * h}",
            cli_hint=f"raise the limit with `diffsim --max-pixels {w * h} COMMAND ...` (or {MAX_PIXELS_ENV}={w * h})",
        )


# ------------------------------------------------------------------ Pillow modes
# Modes Pillow converts to the RGB picture they show (8 bits per channel). Alpha is dropped, not
# composited (as the authors' ``convert("RGB")``): the colour stored under transparent pixels is used.
RGB_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "HSV")
# Single-channel high-bit-depth modes, read as float and scaled by the mode's range (no 8-bit rounding).
INT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
SUPPORTED_MODES = RGB_MODES + INT16_MODES + ("I", "F")


def _unit_gray(arr: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    return t.unsqueeze(0).expand(3, -1, -1).contiguous()


def pil_to_picture(im: Image.Image, what: str) -> Image.Image | torch.Tensor:
    """The picture a Pillow image shows: an RGB image (8-bit modes) or a (3, H, W) float tensor in [0, 1].

    ``I;16*`` is divided by 65535; ``I`` (32-bit integers, how Pillow holds 16-bit data from some
    formats) must lie in [0, 65535] and is divided by 65535; ``F`` (float) must lie in [0, 1]. Values out
    of range raise :class:`ImageError`: nothing is clipped. Other modes (``LAB``, ``La``...) are refused.
    """
    mode = im.mode
    if mode in RGB_MODES:
        return im if mode == "RGB" else im.convert("RGB")
    if mode in INT16_MODES:
        return _unit_gray(np.asarray(im).astype(np.float32) / 65535.0)
    lo: float  # an int for mode I, a float for mode F
    hi: float
    if mode == "I":
        arr = np.asarray(im)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise ImageError(
                f"{what}: 32-bit integer image (mode I) with values {lo}..{hi}; diffsim reads mode I "
                "as 16-bit data (0..65535) and does not clip: save it as 8- or 16-bit"
            )
        return _unit_gray(arr.astype(np.float32) / 65535.0)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ImageError(f"{what}: float image (mode F) contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-4 or hi > 1 + 1e-4:
            raise ImageError(
                f"{what}: float image (mode F) holds values in [{lo:.4g}, {hi:.4g}]; diffsim reads "
                "float images as [0, 1] and does not clip: rescale it to [0, 1]"
            )
        return _unit_gray(np.clip(arr, 0.0, 1.0))  # clips only the 1e-4 tolerance
    raise ImageError(
        f"{what}: unsupported image mode {mode!r}; supported: {', '.join(SUPPORTED_MODES)} (convert it to RGB first)"
    )


def load_picture(path: str | os.PathLike) -> Image.Image | torch.Tensor:
    """Open an image file as the picture it shows (see :func:`pil_to_picture`), EXIF orientation applied.

    Files above the pixel limit (:func:`set_max_pixels`) are refused before decoding. Raises :class:`ImageError`.
    """
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image file not found: {p}")
    if p.is_dir():
        raise ImageError(f"expected an image file but got a directory: {p}")
    return _open_picture(p, str(p), None)


def decode_picture(data: bytes, what: str, limit: int | None = None) -> Image.Image | torch.Tensor:
    """:func:`load_picture` for an encoded image held in memory (a gallery's parquet or tar shard, or file
    bytes already read); ``what`` names it in errors; ``limit``: the pixel limit (default :func:`max_pixels`)."""
    return _open_picture(io.BytesIO(data), what, limit)


def _open_picture(fp: Path | io.BytesIO, what: str, limit: int | None) -> Image.Image | torch.Tensor:
    """The one decoder of image files: pixel limit before decoding, EXIF transpose, then :func:`pil_to_picture`."""
    im: Image.Image  # opened as an ImageFile, then EXIF-transposed
    try:
        with _PIL_LOCK, warnings.catch_warnings():
            # diffsim applies its own pixel limit (before decoding); Pillow's must not fire first
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(fp) as im:
                    _check_pixels(im.size, what, limit)
                    im.load()
                    im = ImageOps.exif_transpose(im)
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        text = str(exc).replace(repr(fp), repr(what))  # bytes in memory are named as their file would be
        raise ImageError(f"cannot read image {what}: {text} (is the file truncated or not an image?)") from exc
    return pil_to_picture(im, what)


def check_image_file(path: str | os.PathLike) -> tuple[int, int]:
    """Cheap check of an image file before any model loads: it exists, Pillow recognises it (header only),
    it is within the pixel limit and its mode is supported. Returns (width, height); raises :class:`ImageError`."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image file not found: {p}")
    if p.is_dir():
        raise ImageError(f"expected an image file but got a directory: {p}")
    try:
        with _PIL_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(p) as im:
                    size, mode = im.size, im.mode
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot read image {p}: {exc} (is the file truncated or not an image?)") from exc
    _check_pixels(size, str(p))
    if mode not in SUPPORTED_MODES:
        raise ImageError(
            f"{p}: unsupported image mode {mode!r}; supported: {', '.join(SUPPORTED_MODES)} (convert it to RGB first)"
        )
    return size


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as an RGB PIL image (16-bit and float data are rounded to 8 bits).

    Raises :class:`ImageError`.
    """
    pic = load_picture(path)
    if isinstance(pic, Image.Image):
        return pic
    return Image.fromarray((pic.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8))


def _square(im: Image.Image, crop: str) -> Image.Image:
    if crop == "center":
        w, h = im.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
    return im


#: resampling filters by name (Pillow's; torchvision's ``Resize`` on a PIL image calls these)
RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}


def _pil_to_unit(im: Image.Image, size: int, crop: str, resample: str = "lanczos") -> torch.Tensor:
    im = _square(im.convert("RGB"), crop)
    if im.size != (size, size):
        im = im.resize((size, size), RESAMPLE[resample])
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _resize_channel(chan: Image.Image, width: int, height: int, resample: Image.Resampling) -> np.ndarray:
    """Resize one float channel as Pillow resizes 8-bit data: horizontal pass, clip to [0, 1], vertical pass, clip.

    Pillow's 8-bit resize clips to 0..255 between its two passes; a single float resize does not, so
    Lanczos / bicubic overshoot at edges survived the first pass and moved pixels by up to ~0.04.
    Clipping at the same point makes 8-bit, 16-bit and float copies of one picture agree within 1/255.
    """
    if chan.size[0] != width:
        arr = np.asarray(chan.resize((width, chan.size[1]), resample), dtype=np.float32)
        chan = Image.fromarray(np.clip(arr, 0.0, 1.0), mode="F")
    if chan.size[1] != height:
        chan = chan.resize((width, height), resample)
    return np.clip(np.asarray(chan, dtype=np.float32), 0.0, 1.0)


def _resize_float(x: torch.Tensor, width: int, height: int, resample: Image.Resampling) -> torch.Tensor:
    """(3,H,W) float in [0,1] -> (3,height,width), resampled per channel like Pillow's 8-bit path (no quantisation)."""
    chans = [Image.fromarray(c.float().cpu().numpy(), mode="F") for c in x]
    return torch.from_numpy(np.stack([_resize_channel(c, width, height, resample) for c in chans]))


def _float_to_unit(x: torch.Tensor, size: int, crop: str, what: str, resample: str = "lanczos") -> torch.Tensor:
    """(3,H,W) float in [0,1] -> (3,size,size) with a float resize (no uint8 quantisation)."""
    if tuple(x.shape[1:]) == (size, size):
        return x.float()
    if crop == "center":
        h, w = x.shape[1:]
        s = min(w, h)
        top, left = (h - s) // 2, (w - s) // 2
        x = x[:, top : top + s, left : left + s]
    return _resize_float(x, size, size, RESAMPLE[resample])


def _check_range(x: torch.Tensor, what: str) -> None:
    if not torch.isfinite(x).all():
        raise ImageError(f"{what} contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        hint = ""
        if lo >= -1 - 1e-4 and hi <= 1 + 1e-4:
            hint = " (it looks like [-1, 1]: pass (x + 1) / 2)"
        elif lo >= -1e-4 and 16 < hi <= 255 + 1e-3:  # a max of 2 is not an 8-bit picture
            hint = " (it looks like [0, 255]: divide by 255)"
        raise ImageError(f"{what} must hold values in [0, 1]; got min {lo:.4g}, max {hi:.4g}{hint}")


def _tensor_items(x: torch.Tensor, what: str) -> list[torch.Tensor]:
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ImageError(
            f"{what} must have shape (N, 3, H, W) or (3, H, W) with values in [0, 1]; got {tuple(x.shape)}"
        )
    x = _int_to_unit(x, what)
    _check_range(x, what)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return list(x.detach().cpu().float())


_INT_RANGES = {torch.uint8: 255.0, torch.uint16: 65535.0, torch.bool: 1.0}


def _int_to_unit(x: torch.Tensor, what: str) -> torch.Tensor:
    """Float tensors pass through; uint8 / uint16 / bool are scaled by their dtype's range; others are refused."""
    if x.is_floating_point():
        return x
    scale = _INT_RANGES.get(x.dtype)
    if scale is None:
        raise ImageError(
            f"{what} has dtype {str(x.dtype).removeprefix('torch.')}: expected float in [0, 1], "
            "uint8 (0..255), uint16 (0..65535) or bool"
        )
    return x.detach().cpu().float() / scale


def _array_items(a: np.ndarray, what: str) -> list[Image.Image | torch.Tensor]:
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise ImageError(f"{what} must have shape (H, W), (H, W, C) or (N, H, W, C) with C in 1, 3, 4; got {a.shape}")
    if a.dtype == np.uint8:
        return [Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im) for im in a]
    if a.dtype == np.uint16 or a.dtype == np.bool_ or np.issubdtype(a.dtype, np.floating):
        scale = 65535.0 if a.dtype == np.uint16 else 1.0
        arr = np.ascontiguousarray(a[..., :3], dtype=np.float32) / scale
        return list(_tensor_items(torch.from_numpy(arr).permute(0, 3, 1, 2), what))
    raise ImageError(f"{what} has dtype {a.dtype}: expected uint8 (0..255), uint16 (0..65535), bool or float in [0, 1]")


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
    if isinstance(images, (bytes, bytearray)) or not isinstance(images, Iterable):
        raise ImageError(
            f"unsupported image type {type(images).__name__}: expected a path, PIL image, numpy "
            "array, tensor, or a list of them"
        )
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


def to_unit_tensor(
    image: ImageLike, size: int, crop: str = "none", index: int = 0, resample: str = "lanczos"
) -> torch.Tensor:
    """One image to a (3, size, size) float32 tensor in [0, 1] (``resample``: a :data:`RESAMPLE` name)."""
    item = _load_item(image, index)
    if isinstance(item, Image.Image):
        return _pil_to_unit(item, size, crop, resample)
    return _float_to_unit(item, size, crop, describe(image, index), resample)


def to_unit_shorter_side(
    image: ImageLike, side: int | None, resample: str = "bilinear", index: int = 0
) -> torch.Tensor:
    """One image to (3, H, W) in [0, 1], the aspect ratio kept: the shorter side to ``side`` where it is
    longer (torchvision ``resize(image, side)`` geometry: the long side truncated), else unchanged; ``side=None``
    keeps the native resolution."""
    item = _load_item(image, index)
    w, h = item.size if isinstance(item, Image.Image) else (item.shape[2], item.shape[1])
    nw, nh = w, h
    if side is not None and min(w, h) > side:
        nw, nh = (side, int(side * h / w)) if w <= h else (int(side * w / h), side)
    if isinstance(item, Image.Image):
        im = item.convert("RGB")
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), RESAMPLE[resample])
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
    return item.float() if (nw, nh) == (w, h) else _resize_float(item, nw, nh, RESAMPLE[resample])


def _load_item(image: ImageLike, index: int) -> Image.Image | torch.Tensor:
    """Validate one input: an RGB PIL image (8-bit files, PIL, uint8 arrays) or a (3, H, W) float tensor in [0, 1]."""
    what = describe(image, index)
    if isinstance(image, (str, os.PathLike)):
        return load_picture(image)
    if isinstance(image, Image.Image):
        return pil_to_picture(ImageOps.exif_transpose(image) or image, what)
    if isinstance(image, np.ndarray):
        (item,) = _array_items(image, what)
        return item
    if isinstance(image, torch.Tensor):
        (item,) = _tensor_items(image, what)
        return item
    raise ImageError(
        f"{what}: unsupported image type {type(image).__name__}; expected a path, PIL image, "
        "numpy array or tensor (float in [0, 1], uint8 or uint16)"
    )


def to_unit_resized(
    image: ImageLike, resize: int, crop: int, index: int = 0, torchvision: bool = False
) -> torch.Tensor:
    """One image to (3, crop, crop) in [0, 1]: shortest side to ``resize`` (bicubic), then a centred crop.

    The CLIP / DINOv2 processors' geometry (the long side rounded), or with ``torchvision`` that of
    torchvision's ``Resize(resize)`` + ``CenterCrop(crop)`` (the long side truncated, the crop offset rounded),
    applied with PIL for files and uint8 data and with an float Pillow bicubic (clipped between passes as the
    8-bit path is) for 16-bit and float data.
    """
    item = _load_item(image, index)
    w, h = item.size if isinstance(item, Image.Image) else (item.shape[2], item.shape[1])
    if torchvision:
        nw = resize if w <= h else int(resize * w / h)
        nh = resize if h <= w else int(resize * h / w)
    else:
        s = resize / min(w, h)
        nw, nh = max(crop, round(w * s)), max(crop, round(h * s))
    if isinstance(item, Image.Image):
        item = item.convert("RGB").resize((nw, nh), Image.Resampling.BICUBIC)
        x = torch.from_numpy(np.asarray(item, dtype=np.float32) / 255.0).permute(2, 0, 1)
    else:
        x = _resize_float(item, nw, nh, Image.Resampling.BICUBIC)
    if torchvision:
        top, left = int(round((x.shape[1] - crop) / 2.0)), int(round((x.shape[2] - crop) / 2.0))
    else:
        top, left = (x.shape[1] - crop) // 2, (x.shape[2] - crop) // 2
    return x[:, top : top + crop, left : left + crop].contiguous()


def content_hash(pixels: torch.Tensor) -> str:
    """Stable hash of one preprocessed image (3, S, S); identical pixels give identical keys."""
    arr = pixels.detach().cpu().contiguous().float().numpy()
    h = hashlib.blake2b(arr.tobytes(), digest_size=16)
    h.update(str(arr.shape).encode())
    return h.hexdigest()
