"""Exceptions raised by diffsim. Every one derives from :class:`DiffSimError`.

The CLI turns any :class:`DiffSimError` into a one-line message and exit code 2. An error may carry a
fix hint in two spellings: ``hint`` names Python arguments (shown by ``str(exc)``), ``cli_hint`` names
command-line flags (shown by the CLI instead, through :meth:`DiffSimError.for_cli`).
"""

from __future__ import annotations

_AUDIENCE = {"cli": False}


def use_cli_hints(on: bool) -> None:
    """While on (the CLI runs a command), ``str(error)`` gives the hint that names command-line flags."""
    _AUDIENCE["cli"] = bool(on)


class DiffSimError(Exception):
    """Base class of every error diffsim raises on bad input or a missing model."""

    def __init__(self, message: str = "", *args: object, hint: str | None = None, cli_hint: str | None = None) -> None:
        super().__init__(message, *args)
        self.message = str(message)
        self.hint = hint
        self.cli_hint = cli_hint

    def _with(self, hint: str | None) -> str:
        base = self.message if len(self.args) <= 1 else Exception.__str__(self)
        return f"{base}; to fix: {hint}" if hint else base

    def __str__(self) -> str:
        if _AUDIENCE["cli"]:  # inside a CLI command: messages recorded as text (skipped images) name flags too
            return self.for_cli()
        return self._with(getattr(self, "hint", None))

    def for_cli(self) -> str:
        """The message with the hint that names command-line flags (falls back to the Python hint)."""
        return self._with(getattr(self, "cli_hint", None) or getattr(self, "hint", None))


class ImageError(DiffSimError, ValueError):
    """An image is missing, unreadable, too large, or a tensor/array has the wrong shape, dtype or range."""


class LayerError(DiffSimError, ValueError):
    """A layer name does not exist in the model, or is the wrong kind of layer."""


class TimestepError(DiffSimError, ValueError):
    """A timestep or step index is outside the scheduler's training range."""


class ModelNotFoundError(DiffSimError, OSError):
    """The model could not be found locally nor downloaded."""


class ConfigError(DiffSimError, ValueError):
    """An option has an invalid value (size, dtype, device, similarity, ...)."""


class DatasetError(DiffSimError, ValueError):
    """A benchmark root is missing, does not match the expected layout, or a manifest is invalid."""


class CacheError(DiffSimError, OSError):
    """The on-disk feature cache folder cannot be created or written."""


class StoreError(DiffSimError, OSError):
    """A gallery feature store is missing, was built with other settings, or a shard file is corrupt."""


class ResourceError(DiffSimError, MemoryError):
    """The machine or device has not enough memory for the requested size and batch (an estimate refused it,
    or an allocation failed)."""


#: the fix for a download that could not reach the Hugging Face Hub
NETWORK_HINT = (
    "check the network connection, or point HF_ENDPOINT at a Hub mirror (e.g. HF_ENDPOINT=https://hf-mirror.com)"
)


def network_errors() -> tuple[type[BaseException], ...]:
    """The exception types a failed transfer raises (OSError, and the HTTP clients' errors where installed)."""
    import contextlib
    import importlib

    found: list[type[BaseException]] = [OSError]
    for module, name in (("httpx", "HTTPError"), ("httpx2", "HTTPError"), ("requests", "RequestException")):
        with contextlib.suppress(ImportError, AttributeError):  # huggingface_hub talks through one of these
            found.append(getattr(importlib.import_module(module), name))
    return tuple(found)


def download_failure(what: str, exc: BaseException) -> str:
    """One line for a failed download of ``what``: the first line of the cause (the Hub's follow-up lines dropped)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    cause = (lines[0] if lines else "").removeprefix("Got: ")
    name = type(exc).__name__
    detail = cause if name in cause or not cause else f"{name}: {cause}"
    return f"downloading {what} failed ({detail})"
