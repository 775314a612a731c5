"""Pick the backbone class for a model from its metadata (see :mod:`.detect`)."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from .detect import SD, SDXL, require_kind
from .stable_diffusion import StableDiffusionBackbone

logger = logging.getLogger(__name__)


def load_unet_backbone(
    model: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    variant: str | None = None,
    single_file_config: str | None = None,
    metric: str = "DiffSim-S",
    compile: bool | str = False,
    channels_last: bool = False,
    inference_mode: bool = False,
    **sdxl_options: Any,
) -> StableDiffusionBackbone:
    """A Stable Diffusion 1.x/2.x or SDXL backbone, whichever ``model`` is; other kinds get a ConfigError.

    ``compile`` / ``channels_last`` / ``inference_mode`` are the SD 1.x/2.x speed options (the SDXL
    backbone runs its hook path and ignores them); ``sdxl_options`` (e.g. ``vae=``) apply to SDXL only.
    """
    kind = require_kind(model, (SD, SDXL), metric, revision)
    if kind == SDXL:
        from .sdxl import SDXLBackbone

        if compile or channels_last or inference_mode:
            logger.info("SDXL backbone: compile / channels_last / inference_mode are not used")
        return SDXLBackbone.from_pretrained(
            model,
            device=device,
            dtype=dtype,
            revision=revision,
            variant=variant,
            single_file_config=single_file_config,
            **sdxl_options,
        )
    return StableDiffusionBackbone.from_pretrained(
        model,
        device=device,
        dtype=dtype,
        revision=revision,
        variant=variant,
        single_file_config=single_file_config,
        compile=compile,
        channels_last=channels_last,
        inference_mode=inference_mode,
    )
