"""Layers of a transformer denoiser (DiT-style ``transformer_blocks``): the table, ``blockL`` aliases, resolution.

SD3 (``transformer_blocks.L.attn``) and PixArt (``transformer_blocks.L.attn1``) expose one self-attention
per block; its image tokens sit on the latent's patch grid.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LayerError
from .layers import AttentionLayer
from .loading import classify, diffusers_errors_only, load_cache_first


def block_layers(transformer: Any, attr: str, latent_size: int) -> list[AttentionLayer]:
    """``transformer_blocks.L.<attr>`` with heads, channels and the patch grid at latent side ``latent_size``."""
    side = latent_size // int(transformer.config.patch_size)
    out = []
    for i, block in enumerate(transformer.transformer_blocks):
        a = getattr(block, attr)
        inner = a.to_q.out_features
        out.append(
            AttentionLayer(
                f"transformer_blocks.{i}.{attr}",
                "self",
                a.heads,
                a.to_q.in_features,
                inner // a.heads,
                (side, side),
                f"block{i}",
            )
        )
    return out


def block_aliases(transformer: Any, attr: str) -> dict[str, str]:
    """``blockL`` -> ``transformer_blocks.L.<attr>`` for every block."""
    return {f"block{i}": f"transformer_blocks.{i}.{attr}" for i in range(len(transformer.transformer_blocks))}


def resolve_blocks(aliases: dict[str, str], names: list[Any], model: str) -> list[str]:
    """Module paths for ``blockL`` aliases, block indices or module paths (order kept, duplicates dropped)."""
    paths = set(aliases.values())
    out: list[str] = []
    for n in names:
        key = f"block{n}" if isinstance(n, int) or str(n).isdigit() else str(n)
        p = aliases.get(key, key)
        if p not in paths:
            close = difflib.get_close_matches(str(n), list(aliases) + sorted(paths), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            example = next(iter(aliases.values()), "").replace(".0.", ".L.", 1)
            raise LayerError(
                f"unknown {model} layer {n!r}.{hint} {model} layers are block0..block{len(aliases) - 1} ({example})"
            )
        if p not in out:
            out.append(p)
    return out


def load_pipeline(
    pipeline_cls: Any, model: str | os.PathLike, what: str, folders: str, name: str | None = None, **kw: Any
) -> Any:
    """``pipeline_cls.from_pretrained`` on a hub id (cache first) or a local folder, with actionable errors.

    ``folders`` lists what the folder holds and ``name`` the pipeline class a user should have (both for the
    error messages; default: ``pipeline_cls``'s name); ``kw``: ``torch_dtype``, ``revision``, ``variant``."""
    name = name or pipeline_cls.__name__
    where = classify(model)
    if where == "file":
        raise ConfigError(f"{what} needs a diffusers folder or hub id ({folders}); got the single file {model}")
    text = str(Path(str(model)).expanduser()) if where == "folder" else str(model)

    def attempt(local_files_only: bool = False) -> Any:
        with diffusers_errors_only():
            return pipeline_cls.from_pretrained(text, local_files_only=local_files_only, **kw)

    return load_cache_first(
        attempt,
        text,
        where == "folder",
        what,
        f"model='/path/to/{name}-folder'",
        cli_fix=f"a local {name} folder with --model PATH",
        local_hint=f" (expected a {name} folder: {folders})",
    )


def skeleton_blocks(
    transformer_cls: Any, attr: str, model: str | os.PathLike, size: int | None, revision: str | None, what: str
) -> tuple[int, list[AttentionLayer], dict[str, str]]:
    """(size, layers, aliases) of a transformer pipeline read from its configs (meta device: no weights loaded);
    ``size`` None: the model's native size."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL

    from ..errors import ModelNotFoundError
    from ..images import check_size
    from .loading import _first_line

    local = classify(model) == "folder"
    text = str(Path(str(model)).expanduser()) if local else str(model)
    kw: dict[str, Any] = {"revision": revision} if revision else {}
    if local:
        kw["local_files_only"] = True
    try:
        cfg = transformer_cls.load_config(text, subfolder="transformer", **kw)
        vcfg = AutoencoderKL.load_config(text, subfolder="vae", **kw)
    except Exception as exc:
        raise ModelNotFoundError(f"could not read the {what} configs of {text!r}: {_first_line(exc)}") from exc
    with init_empty_weights():
        net = transformer_cls.from_config(cfg)
    factor = 2 ** (len(vcfg.get("block_out_channels", [0] * 4)) - 1)
    size = size or int(net.config.sample_size) * factor
    check_size(size, factor * int(net.config.patch_size))
    return size, block_layers(net, attr, size // factor), block_aliases(net, attr)
