"""DiffSim-S: the Aligned Attention Score in a self-attention layer of a Stable Diffusion 1.x/2.x U-Net."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import ClassVar

import torch

from .. import aas
from ..backbones.lazy import LazyStableDiffusion
from ..backbones.loading import DEFAULT_MODEL
from ..backbones.stable_diffusion import compile_mode
from ..bounds import MIN_LATENT_SIZE, check_seed
from ..defaults import DEFAULT_LAYER, DEFAULT_PROMPT, DEFAULT_SEED, DEFAULT_STEP  # re-exported (no torch there)
from ..devices import resolve_dtype
from ..errors import ConfigError, LayerError
from ..images import check_crop, check_size
from ..segment import DEFAULT_MASK_PROMPT, DEFAULT_SEGMENTER
from ..settings import (
    compare_field,
    load_field,
    one_of,
    path_like,
    per_call_field,
    resolved_field,
    runtime_field,
)
from .attention import AttentionMetric
from .base import FeatureSettings
from .conditioning import TextConditioning

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_LAYER", "DEFAULT_PROMPT", "DEFAULT_SEED", "DEFAULT_STEP", "DiffSim", "DiffSimSettings"]


@dataclasses.dataclass(frozen=True)
class DiffSimSettings(FeatureSettings):
    """Settings of DiffSim-S (and of the metrics that share its features)."""

    model: str | os.PathLike | None = load_field(DEFAULT_MODEL)
    layer: str | tuple[str, ...] = resolved_field(DEFAULT_LAYER)  # alias or module path, or several (one pass)
    timestep: int | None = resolved_field(None)  # the actual DDPM timestep T
    step: int | None = resolved_field(None)  # the paper's index K (T = scheduler.timesteps[K]); default step 500
    prompt: str = per_call_field(DEFAULT_PROMPT)
    size: int = 512
    seed: int = DEFAULT_SEED
    single_branch: bool = False  # the prompt branch only (half the U-Net cost)
    similarity: str = compare_field("cosine")  # or "mse" (a distance)
    crop: str = "none"  # or "center"
    variant: str | None = load_field(None)
    single_file_config: str | None = load_field(None)
    mask_keys: bool = compare_field(False)  # with masks: attention reads foreground keys only
    mask_model: str | os.PathLike = compare_field(DEFAULT_SEGMENTER)  # segmentation model behind masks="auto"
    mask_prompt: str | tuple[str, ...] = compare_field(DEFAULT_MASK_PROMPT)
    auto_masks: bool = compare_field(False)  # "auto" masks by default
    compile: bool | str = runtime_field(False, load=True)  # torch.compile the truncated U-Net and VAE (or a mode)
    channels_last: bool = runtime_field(False, load=True)  # U-Net memory format
    inference_mode: bool = runtime_field(False, load=True)  # torch.inference_mode for the passes
    compare_dtype: str | None = compare_field(None)  # attention products of compare in fp16/bf16 (GPU); None: fp32

    exclusive: ClassVar[tuple[frozenset[str], ...]] = (frozenset({"timestep", "step"}),)

    def normalise(self) -> None:
        if isinstance(self.layer, (list, tuple)):
            self._set("layer", tuple(self.layer))
        if isinstance(self.mask_prompt, list):
            self._set("mask_prompt", tuple(self.mask_prompt))
        for name in ("single_branch", "mask_keys", "auto_masks", "channels_last", "inference_mode"):
            self._set(name, bool(getattr(self, name)))

    def validate(self) -> None:
        super().validate()
        names = (self.layer,) if isinstance(self.layer, str) else self.layer
        if not names or not all(isinstance(n, str) for n in names):
            raise LayerError(f"layer must be a layer name or a list of layer names; got {self.layer!r}")
        if self.timestep is not None and self.step is not None:
            raise ConfigError("give either timestep (the actual T) or step (the paper's index), not both")
        if not isinstance(self.prompt, str):
            raise ConfigError(f"prompt must be a string; got {type(self.prompt).__name__}")
        # every SD VAE downsamples by 8 (re-checked against the model in setup); below an 8 x 8 latent
        # the deep layers hold one token and every pair scores 1.0
        check_size(self.size, 8, MIN_LATENT_SIZE, "the 8x-downsampled latent must be at least 8 x 8")
        check_seed("seed", self.seed)
        one_of("similarity", self.similarity, aas.SIMILARITIES)
        check_crop(self.crop)
        path_like("mask_model", self.mask_model, optional=False)
        compile_mode(self.compile)
        if self.compare_dtype is not None:
            resolve_dtype(self.compare_dtype, torch.device("cpu"))

    @property
    def higher_is_better(self) -> bool:
        return self.similarity == "cosine"

    @property
    def layer_names(self) -> list[str]:
        return [self.layer] if isinstance(self.layer, str) else list(self.layer)


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
