"""Attention layers of a diffusers U-Net: enumeration, token counts, paper aliases, name resolution.

Aliases follow the paper's figures: ``down0..`` / ``mid`` / ``up0..`` name the *last* self-attention
of each block that has attention, in order. For SD 1.5, ``up0`` is
``up_blocks.1.attentions.2.transformer_blocks.0.attn1``. Appending ``.cross`` to an alias names the
cross-attention (``attn2``) of the same transformer block.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, cast

import torch.nn as nn

from ..errors import LayerError


@dataclass(frozen=True)
class AttentionLayer:
    """One attention module of the U-Net at a given input size."""

    path: str
    kind: str  # "self" or "cross"
    heads: int
    channels: int
    head_dim: int
    grid: tuple[int, int]
    alias: str | None = None

    @property
    def tokens(self) -> int:
        return self.grid[0] * self.grid[1]


def _is_attention(module: nn.Module) -> bool:
    return hasattr(module, "to_q") and hasattr(module, "to_k") and hasattr(module, "heads")


def _half(n: int, times: int) -> int:
    for _ in range(times):
        n = (n + 1) // 2
    return n


def _block_grids(unet: nn.Module, latent: int) -> dict[str, int]:
    """Side length of the feature map inside each down/mid/up block for a square latent."""
    grids: dict[str, int] = {}
    downs = 0
    for i, block in enumerate(cast(nn.ModuleList, unet.down_blocks)):
        grids[f"down_blocks.{i}"] = _half(latent, downs)
        downs += 1 if getattr(block, "downsamplers", None) else 0
    side = _half(latent, downs)
    grids["mid_block"] = side
    for i, block in enumerate(cast(nn.ModuleList, unet.up_blocks)):
        grids[f"up_blocks.{i}"] = side
        side *= 2 if getattr(block, "upsamplers", None) else 1
    return grids


def alias_table(unet: nn.Module, per_transformer: bool = False) -> dict[str, str]:
    """Paper aliases -> module paths (self-attention; ``<alias>.cross`` for the cross-attention).

    ``per_transformer=True`` (SDXL, whose attentions hold 2 or 10 transformer blocks) also names every
    transformer block: ``<block alias>.a<attention>.t<transformer>``, e.g. ``up0.a2.t9`` is
    ``up_blocks.0.attentions.2.transformer_blocks.9`` (the authors' ``--target_layer b a j``).
    """
    table: dict[str, str] = {}

    def last_attn(prefix: str, block: nn.Module) -> str | None:
        attns = getattr(block, "attentions", None)
        if not attns:
            return None
        tb = getattr(attns[-1], "transformer_blocks", None)
        if not tb:
            return None
        return f"{prefix}.attentions.{len(attns) - 1}.transformer_blocks.{len(tb) - 1}"

    k = 0
    for i, block in enumerate(cast(nn.ModuleList, unet.down_blocks)):
        p = last_attn(f"down_blocks.{i}", block)
        if p:
            table[f"down{k}"] = p
            k += 1
    if getattr(unet, "mid_block", None) is not None:
        p = last_attn("mid_block", cast(nn.Module, unet.mid_block))
        if p:
            table["mid"] = p
    k = 0
    for i, block in enumerate(cast(nn.ModuleList, unet.up_blocks)):
        p = last_attn(f"up_blocks.{i}", block)
        if p:
            table[f"up{k}"] = p
            k += 1
    if per_transformer:
        for alias, last in list(table.items()):
            block_path = last.split(".attentions.")[0]
            parent: Any = unet.get_submodule(block_path)
            for a, attn in enumerate(parent.attentions):
                for j in range(len(attn.transformer_blocks)):
                    table[f"{alias}.a{a}.t{j}"] = f"{block_path}.attentions.{a}.transformer_blocks.{j}"
    out: dict[str, str] = {}
    for alias, block_path in table.items():
        out[alias] = f"{block_path}.attn1"
        out[f"{alias}.cross"] = f"{block_path}.attn2"
    return out


def list_attention_layers(unet: nn.Module, latent_size: int, per_transformer: bool = False) -> list[AttentionLayer]:
    """Every attention module inside the U-Net's transformer blocks, in execution order."""
    grids = _block_grids(unet, latent_size)
    reverse: dict[str, str] = {}
    for k, v in alias_table(unet, per_transformer).items():
        reverse.setdefault(v, k)  # the block alias (down0, up0, ...) before the per-transformer one
    layers = []
    for name, module in unet.named_modules():
        if not _is_attention(module) or ".transformer_blocks." not in name:
            continue
        block = _block_of(name)
        side = grids.get(block)
        if side is None:
            continue
        inner = module.to_q.out_features
        kind = "cross" if getattr(module, "is_cross_attention", False) or name.endswith("attn2") else "self"
        layers.append(
            AttentionLayer(
                name,
                kind,
                module.heads,
                module.to_q.in_features,
                inner // module.heads,
                (side, side),
                reverse.get(name),
            )
        )
    n_down = len(cast(nn.ModuleList, unet.down_blocks))
    order = {b: i for i, b in enumerate(list(grids)[:n_down] + ["mid_block"] + list(grids)[n_down + 1 :])}
    return sorted(layers, key=lambda lay: order[_block_of(lay.path)])


def _block_of(path: str) -> str:
    return "mid_block" if path.startswith("mid_block") else ".".join(path.split(".")[:2])


def resolve_layer(unet: nn.Module, name: str, kind: str = "self", per_transformer: bool = False) -> str:
    """Turn a module path or alias into a module path; raise :class:`LayerError` with suggestions."""
    aliases = alias_table(unet, per_transformer)
    path = aliases.get(name, name)
    modules = dict(unet.named_modules())
    module = modules.get(path)
    if module is None or not _is_attention(module):
        known = [n for n, m in modules.items() if _is_attention(m)] + list(aliases)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise LayerError(
            f"unknown attention layer {name!r}.{hint} Run `diffsim layers --model MODEL` to list "
            f"every layer and alias ({', '.join(a for a in aliases if '.' not in a)})."
        )
    is_cross = path.endswith("attn2")
    if kind == "self" and is_cross:
        raise LayerError(
            f"layer {name!r} ({path}) is a cross-attention layer; DiffSim-S needs a self-attention "
            f"layer (attn1), e.g. {path[:-1]}1"
        )
    if kind == "cross" and not is_cross:
        raise LayerError(
            f"layer {name!r} ({path}) is not a cross-attention layer; DiffSim-C needs an attn2 "
            f"layer, e.g. {path[:-1]}2 (or an alias with '.cross': up0.cross)"
        )
    return path


def resolve_layers(unet: nn.Module, names: list[str], kind: str = "self", per_transformer: bool = False) -> list[str]:
    """:func:`resolve_layer` of each name (order kept, duplicates dropped)."""
    return list(dict.fromkeys(resolve_layer(unet, n, kind, per_transformer) for n in names))
