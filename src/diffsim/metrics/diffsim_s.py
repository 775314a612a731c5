"""DiffSim-S: the Aligned Attention Score in a self-attention layer of a Stable Diffusion 1.x/2.x U-Net."""

from __future__ import annotations

import dataclasses
import logging
import os

import torch

from ..backbones.lazy import LazyStableDiffusion
from ..backbones.loading import DEFAULT_MODEL
from ..backbones.stable_diffusion import compile_mode
from ..bounds import MIN_LATENT_SIZE, check_size
from ..defaults import DEFAULT_LAYER, DEFAULT_PROMPT, DEFAULT_SEED, DEFAULT_STEP  # re-exported (no torch there)
from ..devices import resolve_dtype
from ..settings import (
    compare_field,
    load_field,
    runtime_field,
)
from .attention import AttentionMetric
from .attention_settings import TextSettings
from .conditioning import TextConditioning

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_LAYER", "DEFAULT_PROMPT", "DEFAULT_SEED", "DEFAULT_STEP", "DiffSim", "DiffSimSettings"]


@dataclasses.dataclass(frozen=True)
class DiffSimSettings(TextSettings):
    """Settings of DiffSim-S (and of the metrics that share its features): the text-conditioned attention
    settings plus Stable Diffusion's load and speed options."""

    model: str | os.PathLike | None = load_field(DEFAULT_MODEL)
    size: int = 512
    variant: str | None = load_field(None)
    single_file_config: str | None = load_field(None)
    compile: bool | str = runtime_field(False, load=True)  # torch.compile the truncated U-Net and VAE (or a mode)
    channels_last: bool = runtime_field(False, load=True)  # U-Net memory format
    inference_mode: bool = runtime_field(False, load=True)  # torch.inference_mode for the passes
    compare_dtype: str | None = compare_field(None)  # attention products of compare in fp16/bf16 (GPU); None: fp32

    def normalise(self) -> None:
        super().normalise()
        self._set("channels_last", bool(self.channels_last))
        self._set("inference_mode", bool(self.inference_mode))

    def validate(self) -> None:
        super().validate()
        # every SD VAE downsamples by 8 (re-checked against the model in setup); below an 8 x 8 latent
        # the deep layers hold one token and every pair scores 1.0
        check_size(self.size, 8, MIN_LATENT_SIZE, "the 8x-downsampled latent must be at least 8 x 8")
        compile_mode(self.compile)
        if self.compare_dtype is not None:
            resolve_dtype(self.compare_dtype, torch.device("cpu"))


class DiffSim(AttentionMetric):
    """DiffSim-S on Stable Diffusion 1.x/2.x. Build it with :meth:`from_pretrained` (or
    :func:`diffsim.load`, which picks the metric for any model kind); score with :meth:`score` /
    :meth:`matrix`.

    ``embed(images, prompt=None, masks=None, mask_prompt=None)``: ``prompt`` overrides the metric's
    prompt for this call (e.g. NIGHTS' per-triplet prompts). ``masks`` (one per image, None entries
    allowed; see :mod:`diffsim.masks`) attaches foreground weights on each layer's token grid:
    ``compare`` then weights every query token by its mask and, with ``mask_keys=True``, lets attention
    read foreground keys only. ``masks="auto"`` takes them from the metric's segmentation model,
    prompted with ``mask_prompt``. Masks do not change the cached network features.
    """

    Settings = DiffSimSettings
    settings: DiffSimSettings
    default_name = "diffsim-s"
    default_model = DEFAULT_MODEL
    #: a local folder loads its weights only when a feature is not in the cache (its configs answer layer,
    #: step and size checks first); Hub ids and single files load at once
    backbone_class = LazyStableDiffusion
    model_kinds = ("sd",)
    conditioning = TextConditioning()
