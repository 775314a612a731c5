"""Device and dtype resolution shared by every backbone."""

from __future__ import annotations

import torch

from .errors import ConfigError

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,  # CPU only: reference runs and gradcheck
    "fp64": torch.float64,
    "double": torch.float64,
}


SUPPORTED_DEVICES = ("cpu", "cuda", "mps", "xpu")


def _available(kind: str) -> tuple[bool, int]:
    """(available, device count) of a device type on this machine and this torch build."""
    if kind == "cpu":
        return True, 1
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available()), 1
    mod = getattr(torch, kind, None)
    if mod is None or not mod.is_available():
        return False, 0
    return True, int(mod.device_count())


def available_devices() -> list[str]:
    """The device types usable here, best first."""
    return [k for k in ("cuda", "xpu", "mps", "cpu") if _available(k)[0]]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Return the requested device, or the best available one (cuda, xpu, mps, cpu).

    A device this machine lacks (``mps`` off a Mac, ``cuda`` without a GPU, ``cuda:3`` with two GPUs) or
    an unknown string raises :class:`ConfigError` naming what is available.
    """
    if device is None:
        return torch.device(available_devices()[0])
    here = ", ".join(available_devices())
    fix = dict(
        hint="pass device='cpu' (or None for the best available)",
        cli_hint="pass --device cpu (or leave --device out for the best available)",
    )
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"unknown device {device!r}: expected one of cpu, cuda, cuda:N, mps, xpu (available here: {here})", **fix
        ) from exc
    if dev.type not in SUPPORTED_DEVICES:
        raise ConfigError(
            f"device {device!r} is not supported: expected one of cpu, cuda, cuda:N, mps, xpu (available here: {here})",
            **fix,
        )
    ok, count = _available(dev.type)
    if not ok:
        raise ConfigError(
            f"device {device!r} requested but this machine has no {dev.type.upper()} device "
            f"usable by torch (available here: {here})",
            **fix,
        )
    if dev.index is not None and dev.type != "cpu" and dev.index >= count:
        raise ConfigError(
            f"device {device!r} requested but this machine has {count} {dev.type} device(s) (indices 0..{count - 1})",
            **fix,
        )
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Return the requested dtype; by default float16 on CUDA and float32 elsewhere."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ConfigError(f"unsupported dtype {dtype}: expected float32, float16, bfloat16 or float64 (CPU)")
        out = dtype
    else:
        key = str(dtype).lower().removeprefix("torch.")
        if key not in _DTYPES:
            raise ConfigError(
                f"unknown dtype {dtype!r}: expected one of float32, float16, bfloat16, float64 "
                "(or fp32, fp16, bf16, fp64)"
            )
        out = _DTYPES[key]
    if out == torch.float64 and device.type != "cpu":
        raise ConfigError(f"dtype float64 runs on the CPU only (for reference runs and gradcheck); got device {device}")
    return out


def dtype_name(dtype: torch.dtype) -> str:
    """Short canonical name of a dtype (for configs and cache keys)."""
    return str(dtype).removeprefix("torch.")
