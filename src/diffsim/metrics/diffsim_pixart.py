"""DiffSim-S on PixArt-Sigma / PixArt-alpha: the Aligned Attention Score in a PixArt block's self-attention.

Features are Q/K/V of ``transformer_blocks.L.attn1`` (alias ``blockL``) for the guidance pair
``["", prompt]`` (T5), noised as for SD (see :mod:`diffsim.backbones.pixart`). Default: ``block14`` (the
middle of PixArt-XL/2's 28 blocks) at step 500, the model's native size (1024 px for the -1024 models).
"""

from __future__ import annotations

import dataclasses
import os

from ..backbones.pixart import DEFAULT_PIXART, PixArtBackbone
from ..settings import load_field, resolved_field
from .attention import AttentionMetric
from .attention_settings import TextSettings
from .conditioning import TextConditioning


@dataclasses.dataclass(frozen=True)
class PixArtSettings(TextSettings):
    """DiffSim-S settings for PixArt-Sigma / PixArt-alpha."""

    model: str | os.PathLike | None = load_field(DEFAULT_PIXART)
    variant: str | None = load_field(None)
    layer: str | tuple[str, ...] = resolved_field("block14")  # blockL, an index, or transformer_blocks.L.attn1
    size: int | None = resolved_field(None)  # None: the model's native size


class DiffSimPixArt(AttentionMetric):
    """DiffSim-S with a PixArt backbone (:func:`diffsim.load` picks it for PixArt pipelines)."""

    Settings = PixArtSettings
    settings: PixArtSettings
    default_name = "diffsim-s-pixart"
    default_model = DEFAULT_PIXART
    backbone_class = PixArtBackbone
    conditioning = TextConditioning()
