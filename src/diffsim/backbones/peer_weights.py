"""Find the weight file(s) of a peer metric (DreamSim, CSD, DISTS, SSCD) from a hub id or a local path.

``model`` may be a local file, a local folder holding one of the expected file names, or a Hugging Face
Hub repo id holding one of them (the local HF cache first; ``HF_HUB_OFFLINE=1`` honoured). Anything
missing raises one :class:`ModelNotFoundError` line that names every place that was tried.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import ModelNotFoundError
from .loading import load_cache_first


def looks_local(text: str) -> bool:
    """A path rather than a hub id: absolute, relative with ``./``, ``~``, a file suffix or several slashes."""
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or Path(text).suffix.lower() in _SUFFIXES


_SUFFIXES = (".pt", ".pth", ".tar", ".bin", ".safetensors", ".ckpt", ".torchscript")


def weight_file(
    model: str | os.PathLike,
    names: Sequence[str],
    what: str,
    fix: str,
    cli_fix: str | None = None,
    revision: str | None = None,
) -> Path:
    """The weight file of ``what``: ``model`` itself, ``model/<name>`` or ``<name>`` in hub repo ``model``."""
    text = str(model)
    p = Path(text).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        for name in names:
            if (p / name).is_file():
                return p / name
        raise ModelNotFoundError(
            f"no {what} weights in folder {p}: looked for {', '.join(names)}", hint=fix, cli_hint=cli_fix or fix
        )
    if looks_local(text):
        raise ModelNotFoundError(f"{what} weights file {p} does not exist", hint=fix, cli_hint=cli_fix or fix)

    def attempt(local_files_only: bool = False) -> str:
        from huggingface_hub import hf_hub_download

        errors = []
        for name in names:
            try:
                return hf_hub_download(text, name, revision=revision, local_files_only=local_files_only)
            except Exception as exc:  # try the next file name
                errors.append(f"{name}: {type(exc).__name__}")
        raise FileNotFoundError(f"none of {', '.join(names)} found in hub repo {text} ({'; '.join(errors)})")

    return Path(load_cache_first(attempt, text, False, f"{what} weights", fix, cli_fix=cli_fix))


def download_file(url: str, target: Path, what: str) -> Path:
    """Fetch ``url`` into ``target`` (a partial download never stays); one-line error naming both."""
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        torch.hub.download_url_to_file(url, str(part), progress=False)
        part.replace(target)
    except Exception as exc:
        part.unlink(missing_ok=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        get = f"download {url} while online into {target.parent}, or pass "
        raise ModelNotFoundError(
            f"{what} weights are not in {target} and downloading {url} failed ({type(exc).__name__}: {first})",
            hint=get + f"model='/path/to/{target.name}'",
            cli_hint=get + f"--model /path/to/{target.name}",
        ) from exc
    return target


def weight_folder(
    model: str | os.PathLike,
    required: Sequence[str],
    what: str,
    fix: str,
    cli_fix: str | None = None,
    revision: str | None = None,
    patterns: Sequence[str] = (),
) -> Path:
    """A folder holding every path in ``required`` (files or folders): ``model`` itself or a hub snapshot."""
    text = str(model)
    p = Path(text).expanduser()

    def check(folder: Path) -> Path:
        missing = [r for r in required if not (folder / r).exists()]
        if missing:
            raise ModelNotFoundError(
                f"{what} folder {folder} lacks {', '.join(missing)}", hint=fix, cli_hint=cli_fix or fix
            )
        return folder

    if p.is_dir():
        return check(p)
    if looks_local(text):
        raise ModelNotFoundError(f"{what} folder {p} does not exist", hint=fix, cli_hint=cli_fix or fix)

    def attempt(local_files_only: bool = False) -> str:
        from huggingface_hub import snapshot_download

        allow = [*required, *patterns] + [r.rstrip("/") + "/*" for r in required]
        return snapshot_download(text, revision=revision, allow_patterns=allow, local_files_only=local_files_only)

    return check(Path(load_cache_first(attempt, text, False, f"{what} weights", fix, cli_fix=cli_fix)))
