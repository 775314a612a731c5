"""Which kind of diffusion model a hub id, folder or single checkpoint is (SD 1.x/2.x, SDXL, DiT).

The kind is read from the model's own metadata, cheaply (no weights are loaded):

* a diffusers folder or hub id: ``model_index.json``'s ``_class_name`` (``StableDiffusionPipeline``,
  ``StableDiffusionXLPipeline``, ``DiTPipeline``, ...), else the ``unet/config.json``
  (``addition_embed_type="text_time"`` is SDXL) or ``transformer/config.json`` (``ada_norm_zero``: DiT);
* a single ``.safetensors`` file: its tensor names, with diffusers' own key table
  (``CHECKPOINT_KEY_NAMES``: ``xl_base`` is SDXL).

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
from .loading import classify, load_cache_first

logger = logging.getLogger(__name__)

SD, SDXL, DIT = "sd", "sdxl", "dit"
DESCRIPTIONS = {
    SD: "a Stable Diffusion 1.x/2.x pipeline (StableDiffusionPipeline)",
    SDXL: "a Stable Diffusion XL pipeline (StableDiffusionXLPipeline)",
    DIT: "a DiT pipeline (DiTPipeline)",
    "sdxl-refiner": "a Stable Diffusion XL refiner (no first text encoder: not supported)",
}
METRIC_FOR = {SD: "diffsim-s (or diffsim-c with an IP-Adapter)", SDXL: "diffsim-s-sdxl", DIT: "diffsim-dit"}

_PIPELINE_KINDS = {
    "StableDiffusionPipeline": SD,
    "StableDiffusionImg2ImgPipeline": SD,
    "StableDiffusionInpaintPipeline": SD,
    "StableDiffusionXLPipeline": SDXL,
    "StableDiffusionXLImg2ImgPipeline": SDXL,
    "StableDiffusionXLInpaintPipeline": SDXL,
    "DiTPipeline": DIT,
}


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
    index: dict[str, Any] | None, unet: dict[str, Any] | None, transformer: dict[str, Any] | None
) -> str | None:
    """The kind from a ``model_index.json`` and the denoiser configs (any may be None)."""
    name = (index or {}).get("_class_name")
    if name in _PIPELINE_KINDS:
        return _PIPELINE_KINDS[name]
    if unet is not None:
        return SDXL if unet.get("addition_embed_type") == "text_time" else SD
    if transformer is not None and (
        transformer.get("_class_name") == "DiTTransformer2DModel" or transformer.get("norm_type") == "ada_norm_zero"
    ):
        return DIT
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
    if CHECKPOINT_KEY_NAMES["xl_base"] in keys:
        return SDXL
    if CHECKPOINT_KEY_NAMES["xl_refiner"] in keys:
        return "sdxl-refiner"
    if CHECKPOINT_KEY_NAMES["v1"] in keys or CHECKPOINT_KEY_NAMES["v2"] in keys:
        return SD
    return None


def detect_kind(model: str | os.PathLike, revision: str | None = None) -> str | None:
    """'sd', 'sdxl', 'dit' (or 'sdxl-refiner'); None when the metadata cannot be read."""
    where = classify(model)
    text = str(Path(str(model)).expanduser()) if where != "hub" else str(model)
    if where == "file":
        return _kind_of_file(Path(text))
    local = where == "folder"
    index = _read_json(text, "model_index.json", local, revision)
    kind = kind_from_configs(index, None, None)
    if kind is not None:
        return kind
    unet = _read_json(text, "unet/config.json", local, revision)
    transformer = None if unet is not None else _read_json(text, "transformer/config.json", local, revision)
    kind = kind_from_configs(index, unet, transformer)
    if kind is None and index is not None:
        logger.debug("unknown pipeline class %r in %s", index.get("_class_name"), text)
        return "other:" + str(index.get("_class_name"))
    return kind


def describe_kind(kind: str | None) -> str:
    if kind is not None and kind.startswith("other:"):
        return f"a {kind[6:]} (not a model DiffSim can use)"
    return DESCRIPTIONS.get(kind or "", "an unknown kind of model")


def require_kind(
    model: str | os.PathLike, expected: tuple[str, ...], metric: str, revision: str | None = None
) -> str | None:
    """The model's kind if it is one of ``expected`` (or unknown); else a :class:`ConfigError`."""
    kind = detect_kind(model, revision)
    if kind is None or kind in expected:
        return kind
    want = " or ".join(DESCRIPTIONS[k] for k in expected)
    fit = METRIC_FOR.get(kind)
    hint = f"; for this model use {fit} (diffsim.load(model) picks it)" if fit else ""
    raise ConfigError(f"{metric} cannot use {model}: it is {describe_kind(kind)}, expected {want}{hint}")
