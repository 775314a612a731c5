"""Which kind of diffusion model a hub id, folder or single checkpoint is (a row of :mod:`.kinds`).

The kind is read from the model's own metadata, cheaply (no weights are loaded), with the rules of the
kinds table:

* a diffusers folder or hub id: ``model_index.json``'s ``_class_name`` (a row's ``pipelines``), else the
  first denoiser config found (``unet/config.json``, ``transformer/config.json``: a row's ``config_rule``);
* a single ``.safetensors`` file: its tensor names, with diffusers' own key table
  (``CHECKPOINT_KEY_NAMES``: a row's ``file_keys``).

A model of the wrong kind for a metric gets :func:`require_kind`'s :class:`ConfigError`, which says
what was found, what was expected and which metric fits the model.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .kinds import denoiser_folders, find_kind, kinds
from .loading import classify, load_cache_first

logger = logging.getLogger(__name__)


def _read_json(model: str, name: str, local: bool, revision: str | None) -> dict[str, Any] | None:
    """A JSON file of a folder or of a hub repo (cache first); None when the repo has no such file.

    A hub id that is neither cached nor downloadable raises the loader's own actionable
    :class:`ModelNotFoundError` here, so a missing network costs one wait, not two.
    """
    if local:
        return _parse(Path(model) / name)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    def attempt(local_files_only: bool = False) -> str | None:
        try:
            return hf_hub_download(model, name, revision=revision, local_files_only=local_files_only)
        except RemoteEntryNotFoundError:
            return None  # the repo exists but has no such file

    path = load_cache_first(
        attempt,
        model,
        False,
        "model",
        "model='/path/to/diffusers-folder' or a single .safetensors/.ckpt file",
        cli_fix="a local diffusers folder or a single .safetensors/.ckpt file with --model PATH",
    )
    return _parse(Path(path)) if path else None


def _parse(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None if missing or unreadable (the loader then says what is wrong)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        logger.debug("cannot read %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def kind_from_configs(
    index: dict[str, Any] | None, configs: dict[str, dict[str, Any] | None] | None = None
) -> str | None:
    """The kind from a ``model_index.json`` and the denoiser configs ({subfolder: config}; any may be None)."""
    name = (index or {}).get("_class_name")
    for k in kinds():
        if name in k.pipelines:
            return k.name
    for k in kinds():
        config = (configs or {}).get(k.denoiser)
        if config is not None and k.config_rule is not None and k.config_rule(config):
            return k.name
    return None


def _kind_of_file(path: Path) -> str | None:
    if path.suffix.lower() != ".safetensors":
        return None  # .ckpt/.bin: reading the names means unpickling; the SD loader decides
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
    except Exception as exc:  # corrupt or not safetensors: the loader reports it with its own message
        logger.debug("cannot read tensor names of %s: %s", path, exc)
        return None
    for k in kinds():
        if any(CHECKPOINT_KEY_NAMES.get(key) in keys for key in k.file_keys):
            return k.name
    return None


def detect_kind(model: str | os.PathLike, revision: str | None = None) -> str | None:
    """The registered kind (:mod:`.kinds`: 'sd', 'sdxl', 'dit', ...); 'other:<pipeline class>' for an unknown
    pipeline; None when the metadata cannot be read."""
    where = classify(model)
    text = str(Path(str(model)).expanduser()) if where != "hub" else str(model)
    if where == "file":
        return _kind_of_file(Path(text))
    local = where == "folder"
    index = _read_json(text, "model_index.json", local, revision)
    kind = kind_from_configs(index)
    if kind is not None:
        return kind
    configs: dict[str, dict[str, Any] | None] = {}
    for folder in denoiser_folders():  # the first denoiser config found decides
        configs[folder] = _read_json(text, f"{folder}/config.json", local, revision)
        if configs[folder] is not None:
            break
    kind = kind_from_configs(index, configs)
    if kind is None and index is not None:
        logger.debug("unknown pipeline class %r in %s", index.get("_class_name"), text)
        return "other:" + str(index.get("_class_name"))
    return kind


def describe_kind(kind: str | None) -> str:
    if kind is not None and kind.startswith("other:"):
        return f"a {kind[6:]} (not a model DiffSim can use)"
    info = find_kind(kind)
    return info.description if info else "an unknown kind of model"


def require_kind(
    model: str | os.PathLike, expected: tuple[str, ...], metric: str, revision: str | None = None
) -> str | None:
    """The model's kind if it is one of ``expected`` (or unknown); else a :class:`ConfigError`."""
    kind = detect_kind(model, revision)
    if kind is None or kind in expected:
        return kind
    want = " or ".join(describe_kind(k) for k in expected)
    info = find_kind(kind)
    fit = info.fitting_metric if info else None
    hint = f"; for this model use {fit} (diffsim.load(model) picks it)" if fit else ""
    raise ConfigError(f"{metric} cannot use {model}: it is {describe_kind(kind)}, expected {want}{hint}")
