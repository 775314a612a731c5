"""Pick the backbone class for a model from its metadata (see :mod:`.detect`)."""
from __future__ import annotations

import os
from typing import Any

import torch

from .detect import SD, SDXL, require_kind
from .stable_diffusion import StableDiffusionBackbone


def load_unet_backbone(model: str | os.PathLike, device: str | torch.device | None = None,
                       dtype: str | torch.dtype | None = None, revision: str | None = None,
                       variant: str | None = None, single_file_config: str | None = None,
                       metric: str = "DiffSim-S", **sdxl_options: Any) -> StableDiffusionBackbone:
    """A Stable Diffusion 1.x/2.x or SDXL backbone, whichever ``model`` is; other kinds get a ConfigError.

    ``sdxl_options`` (e.g. ``vae=`` a fixed fp16 VAE) apply to SDXL models only.
    """
    kind = require_kind(model, (SD, SDXL), metric, revision)
    if kind == SDXL:
        from .sdxl import SDXLBackbone

        return SDXLBackbone.from_pretrained(model, device=device, dtype=dtype, revision=revision, variant=variant,
                                            single_file_config=single_file_config, **sdxl_options)
    return StableDiffusionBackbone.from_pretrained(model, device=device, dtype=dtype, revision=revision,
                                                   variant=variant, single_file_config=single_file_config)
