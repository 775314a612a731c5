"""The one home of value checks (run before anything heavy), and one message for every allocation failure.

Validators raise :class:`~diffsim.errors.ConfigError` naming the value and what was expected; settings,
images, the functional layer and the CLI's option types (:mod:`diffsim.cli.numbers`) share them.
:func:`check_fits` refuses a working size whose estimated activation memory exceeds what the device has
free (``--size 100000`` once allocated ~22 GB before the kernel killed it); :func:`out_of_memory` turns
``MemoryError``, ``torch.OutOfMemoryError`` and the CPU allocator's ``RuntimeError`` into one
:class:`ResourceError` line, whatever the size.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .errors import ConfigError, ResourceError

#: largest working resolution accepted (SD 1.5 works at 512, SDXL at 1024; 4096 is already 64x SD's pixels)
MAX_SIZE = 4096
#: smallest size of a VAE-latent model: a latent below 8 x 8 leaves its deep attention layers one token
#: (every pair then scores 1.0)
MIN_LATENT_SIZE = 64
#: seeds torch, numpy and Python's random all accept
SEED_LIMIT = 2**63
#: square crops before resizing: none (squash) or the centred square
CROPS = ("none", "center")


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` must be an integer (not a bool) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer; got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}; got {value}")
    return value


def positive_int(name: str, value: Any) -> None:
    """``value`` must be an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")


def one_of(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def path_like(name: str, value: Any, optional: bool = True) -> None:
    """``value`` must be a string or a path (or None when ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name} must be a hub id or a local path; got {type(value).__name__}")


def check_crop(crop: str) -> str:
    """``crop`` must be one of :data:`CROPS`."""
    one_of("crop", crop, CROPS)
    return crop


def check_seed(name: str, value: Any) -> int:
    """A seed: an integer with 0 <= seed < 2**63 (what torch, numpy and ``random`` all take)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise ConfigError(f"{name} must be an integer with 0 <= {name} < 2**63 (e.g. 2334); got {value!r}")
    return value


def check_float(name: str, value: Any, positive: bool = False, allow_zero: bool = True) -> float:
    """``value`` must be a finite number (no NaN, no infinity); ``positive``: > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number; got {value!r}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound}; got {value!r}")
    return float(value)


def check_size_range(size: int, minimum: int, why: str = "") -> int:
    """``size`` within [minimum, MAX_SIZE]; the message says why the minimum (e.g. the latent grid)."""
    if size < minimum:
        raise ConfigError(
            f"size {size} is too small: this model needs at least {minimum}{' (' + why + ')' if why else ''}"
        )
    if size > MAX_SIZE:
        gib = 3 * 4 * size * size / 2**30
        raise ConfigError(
            f"size {size} is too large: at most {MAX_SIZE} (one {size} x {size} image alone needs "
            f"{gib:,.1f} GiB as float32, before any activation)"
        )
    return size


def check_size(size: int, multiple: int = 8, minimum: int = 1, why: str = "") -> int:
    """Validate the working resolution: a multiple of ``multiple``, at least ``minimum`` (``why`` says
    why, e.g. the latent grid), at most :data:`MAX_SIZE`."""
    if isinstance(size, bool) or not isinstance(size, int) or size < multiple or size % multiple:
        raise ConfigError(f"size must be a positive multiple of {multiple} (e.g. 512); got {size!r}")
    return check_size_range(size, max(minimum, multiple), why)


# ----------------------------------------------------------------------------- memory
#: bytes per pixel of the largest live activations of a latent diffusion pass, per image and per byte
#: of the dtype: the VAE encoder holds ~3 tensors of 128 channels at full resolution
BYTES_PER_PIXEL = 3 * 128


def estimate_bytes(size: int, batch: int, dtype_bytes: int = 4) -> int:
    """Rough peak activation memory of one batch of a VAE-latent model at ``size`` x ``size``."""
    return int(batch) * int(size) ** 2 * BYTES_PER_PIXEL * int(dtype_bytes)


def available_bytes(device: Any = None) -> int | None:
    """Free memory of ``device`` (CUDA: ``mem_get_info``; CPU: MemAvailable), or None where unknown."""
    import torch

    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        try:
            cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)  # free inside torch's cache
            return int(torch.cuda.mem_get_info(dev)[0]) + int(cached)
        except Exception:  # noqa: BLE001 (no driver, a device being reset: do not block on an estimate)
            return None
    if dev.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(size: int, batch: int, device: Any = None, dtype_bytes: int = 4) -> None:
    """Refuse a size / batch whose estimated activations exceed the device's free memory."""
    need = estimate_bytes(size, batch, dtype_bytes)
    free = available_bytes(device)
    if free is not None and need > free:
        raise ResourceError(
            f"size {size} with batch size {batch} needs about {need / 2**30:.1f} GiB of memory, "
            f"{free / 2**30:.1f} GiB is free",
            hint="use a smaller size or batch_size",
            cli_hint="use a smaller --size or --batch-size",
        )


def is_out_of_memory(exc: BaseException) -> bool:
    """True for MemoryError, torch.OutOfMemoryError and the allocators' 'can't allocate memory' errors."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def out_of_memory(exc: BaseException) -> ResourceError:
    """The one clean error for an allocation failure (the original's first line kept as detail)."""
    if isinstance(exc, ResourceError):
        return exc
    first = str(exc).splitlines()[0].strip() if str(exc) else type(exc).__name__
    return ResourceError(
        f"out of memory ({first[:160]})",
        hint="use a smaller size or batch_size (or dtype='float16' on a GPU)",
        cli_hint="use a smaller --size or --batch-size (or --dtype float16 on a GPU)",
    )
