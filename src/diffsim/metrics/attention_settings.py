"""The settings every attention metric shares, and those of text-conditioned ones (prompt and masks).

:class:`AttentionSettings` holds what :class:`~.attention.AttentionMetric` reads for any backbone (layer,
timestep or step, size, seed, single_branch, similarity, crop); :class:`TextSettings` adds what
:class:`~.conditioning.TextConditioning` reads (prompt, foreground masks). A backbone's own load options
(SD's variant, single_file_config, compile, ...) live on that backbone's settings only.
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

from ..aas import SIMILARITIES
from ..bounds import check_crop, check_seed, one_of, path_like
from ..defaults import DEFAULT_LAYER, DEFAULT_PROMPT, DEFAULT_SEED
from ..errors import ConfigError, LayerError
from ..segment import DEFAULT_MASK_PROMPT, DEFAULT_SEGMENTER
from ..settings import compare_field, per_call_field, resolved_field
from .base import FeatureSettings


@dataclasses.dataclass(frozen=True)
class AttentionSettings(FeatureSettings):
    """Layer(s), timestep or step, size, seed, branches, similarity and crop of an attention metric."""

    layer: str | tuple[str, ...] = resolved_field(DEFAULT_LAYER)  # alias or module path, or several (one pass)
    timestep: int | None = resolved_field(None)  # the actual T
    step: int | None = resolved_field(None)  # the paper's index K (T = scheduler.timesteps[K]); default step 500
    size: int | None = None  # None: the backbone's default size
    seed: int = DEFAULT_SEED
    single_branch: bool = False  # the conditioned branch only (half the denoiser cost)
    similarity: str = compare_field("cosine")  # or "mse" (a distance)
    crop: str = "none"  # or "center"

    exclusive: ClassVar[tuple[frozenset[str], ...]] = (frozenset({"timestep", "step"}),)

    def normalise(self) -> None:
        if isinstance(self.layer, (list, tuple)):
            self._set("layer", tuple(self.layer))
        self._set("single_branch", bool(self.single_branch))

    def validate(self) -> None:
        super().validate()
        names = (self.layer,) if isinstance(self.layer, str) else self.layer
        if not names or not all(isinstance(n, str) for n in names):
            raise LayerError(f"layer must be a layer name or a list of layer names; got {self.layer!r}")
        if self.timestep is not None and self.step is not None:
            raise ConfigError("give either timestep (the actual T) or step (the paper's index), not both")
        check_seed("seed", self.seed)
        one_of("similarity", self.similarity, SIMILARITIES)
        check_crop(self.crop)

    @property
    def higher_is_better(self) -> bool:
        return self.similarity == "cosine"

    @property
    def layer_names(self) -> list[str]:
        return [self.layer] if isinstance(self.layer, str) else list(self.layer)


@dataclasses.dataclass(frozen=True)
class TextSettings(AttentionSettings):
    """Attention settings plus the prompt and the foreground masks of a text-conditioned backbone."""

    prompt: str = per_call_field(DEFAULT_PROMPT)
    mask_keys: bool = compare_field(False)  # with masks: attention reads foreground keys only
    mask_model: str | os.PathLike = compare_field(DEFAULT_SEGMENTER)  # segmentation model behind masks="auto"
    mask_prompt: str | tuple[str, ...] = compare_field(DEFAULT_MASK_PROMPT)
    auto_masks: bool = compare_field(False)  # "auto" masks by default

    def normalise(self) -> None:
        super().normalise()
        if isinstance(self.mask_prompt, list):
            self._set("mask_prompt", tuple(self.mask_prompt))
        self._set("mask_keys", bool(self.mask_keys))
        self._set("auto_masks", bool(self.auto_masks))

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.prompt, str):
            raise ConfigError(f"prompt must be a string; got {type(self.prompt).__name__}")
        path_like("mask_model", self.mask_model, optional=False)
