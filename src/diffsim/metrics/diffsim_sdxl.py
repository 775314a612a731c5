"""DiffSim-S on Stable Diffusion XL: the same metric on SDXL's self-attention layers.

Everything is DiffSim-S (:mod:`.diffsim_s`) except the backbone (:mod:`diffsim.backbones.sdxl`) and
two settings: ``conditioning_size`` (None: SDXL's added time ids say the real input size, as
diffusers' pipeline does; 1024 reproduces the authors' fixed 1024 x 1024 micro-conditioning) and
``vae`` (a fixed fp16 VAE, e.g. ``madebyollin/sdxl-vae-fp16-fix``; without one the VAE runs in float32
when the model is float16). The default size is SDXL's native 1024 (the paper ran 512).
"""

from __future__ import annotations

import dataclasses
import os

from ..backbones.sdxl import DEFAULT_SDXL, SDXLBackbone
from ..bounds import path_like
from ..errors import ConfigError
from ..settings import load_field
from .attention import AttentionMetric
from .conditioning import TextConditioning
from .diffsim_s import DiffSimSettings


@dataclasses.dataclass(frozen=True)
class DiffSimXLSettings(DiffSimSettings):
    """DiffSim-S settings for SDXL (model, native size, micro-conditioning size, fixed VAE)."""

    model: str | os.PathLike | None = load_field(DEFAULT_SDXL)
    size: int = 1024
    conditioning_size: int | None = None  # None: the input size; 1024: the authors' fixed conditioning
    vae: str | os.PathLike | None = load_field(None)  # a fixed fp16 VAE (hub id or folder)

    def validate(self) -> None:
        super().validate()
        c = self.conditioning_size
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise ConfigError(f"conditioning_size must be a positive integer or None (the input size); got {c!r}")
        path_like("vae", self.vae)


class DiffSimXL(AttentionMetric):
    """DiffSim-S with an SDXL backbone (:func:`diffsim.load` picks it for SDXL models)."""

    Settings = DiffSimXLSettings
    settings: DiffSimXLSettings
    default_name = "diffsim-s-sdxl"
    default_model = DEFAULT_SDXL
    backbone_class = SDXLBackbone
    conditioning = TextConditioning(size="conditioning_size")
