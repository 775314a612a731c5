"""DiffSim-S on Stable Diffusion 3 / 3.5 (MM-DiT): the Aligned Attention Score of a joint block's image stream.

Features are the image tokens' Q/K/V of ``transformer_blocks.L.attn`` (alias ``blockL``; qk-norm applied
where the model has it) for the guidance pair ``["", prompt]``; noise on the rectified-flow path at
``sigma = T / 1000`` (see :mod:`diffsim.backbones.sd3`). Default: ``block12`` (the middle of SD3 Medium's
24 blocks) at step 500 (sigma 0.5), the model's native size (1024 px).
"""

from __future__ import annotations

import dataclasses
import os

from ..backbones.sd3 import DEFAULT_SD3, SD3Backbone
from ..settings import load_field, resolved_field
from .attention import AttentionMetric
from .attention_settings import TextSettings
from .conditioning import TextConditioning


@dataclasses.dataclass(frozen=True)
class SD3Settings(TextSettings):
    """DiffSim-S settings for SD3 / SD3.5."""

    model: str | os.PathLike | None = load_field(DEFAULT_SD3)
    variant: str | None = load_field(None)  # e.g. "fp16" weight files
    text_encoder_3: bool = load_field(True)  # False: without T5 (the backbone's load option)
    layer: str | tuple[str, ...] = resolved_field("block12")  # blockL, an index, or transformer_blocks.L.attn
    size: int | None = resolved_field(None)  # None: the model's native size


class DiffSimSD3(AttentionMetric):
    """DiffSim-S with an SD3 / SD3.5 backbone (:func:`diffsim.load` picks it for SD3 pipelines)."""

    Settings = SD3Settings
    settings: SD3Settings
    default_name = "diffsim-s-sd3"
    default_model = DEFAULT_SD3
    backbone_class = SD3Backbone
    conditioning = TextConditioning()
