"""The attention layers of any supported model, read from its configs (meta device: no weights loaded)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError
from .detect import DIT, SDXL, detect_kind
from .layers import AttentionLayer, alias_table, list_attention_layers
from .loading import _first_line, classify, load_unet_skeleton


def _dit_skeleton(model: str, revision: str | None) -> tuple[Any, int]:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    local = classify(model) == "folder"
    text = str(Path(model).expanduser()) if local else model
    kw: dict[str, Any] = {"revision": revision} if revision else {}
    if local:
        kw["local_files_only"] = True
    try:
        cfg = DiTTransformer2DModel.load_config(text, subfolder="transformer", **kw)
        vcfg = AutoencoderKL.load_config(text, subfolder="vae", **kw)
    except Exception as exc:
        raise ModelNotFoundError(f"could not read the DiT configs of {text!r}: {_first_line(exc)}") from exc
    with init_empty_weights():
        transformer = DiTTransformer2DModel.from_config(cfg)
    return transformer, 2 ** (len(vcfg.get("block_out_channels", [0] * 4)) - 1)


def _sdxl_file_skeleton(path: str) -> tuple[Any, int]:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_single_file(path)
    return pipe.unet, 2 ** (len(pipe.vae.config.block_out_channels) - 1)


def model_layers(
    model: str | os.PathLike, size: int | None = None, revision: str | None = None
) -> tuple[str | None, int, list[AttentionLayer], dict[str, str]]:
    """(kind, size, layers, aliases) of ``model`` at image size ``size`` (default: the kind's default)."""
    from ..bounds import check_size

    kind = detect_kind(model, revision)
    if kind == DIT:
        from .dit import dit_layers

        net, factor = _dit_skeleton(str(model), revision)
        size = size or int(net.config.sample_size) * factor
        check_size(size, factor * int(net.config.patch_size))
        rows = dit_layers(net, size // factor)
        return kind, size, rows, {r.alias: r.path for r in rows if r.alias}
    if kind == SDXL and classify(model) == "file":
        net, factor = _sdxl_file_skeleton(str(model))
    else:
        net, factor = load_unet_skeleton(model, revision)
    per = kind == SDXL
    size = size or (1024 if per else 512)
    check_size(size, factor)
    return kind, size, list_attention_layers(net, size // factor, per), alias_table(net, per)
