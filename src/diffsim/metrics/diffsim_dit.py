"""DiffSim on DiT (``facebook/DiT-XL-2-256`` / ``-512``): the Aligned Attention Score in a DiT block.

Features are Q/K/V of ``transformer_blocks.L.attn1`` (alias ``blockL``; input: the adaLN-Zero-modulated
``norm1`` output) for the guidance pair ``[class c, null class]``; the score is DiffSim-S's
``(AAS(A,B) + AAS(B,A)) / 2``. ``class_label`` is an ImageNet id or a label name (the pipeline's
``id2label``), default 1 (goldfish) as the authors used. Noise: the DiT's own schedule at the actual T,
and the model is told that T (see :mod:`diffsim.backbones.dit` for how the authors' code differs).
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

from ..aas import SIMILARITIES
from ..backbones.dit import DEFAULT_CLASS, DEFAULT_DIT, DiTBackbone
from ..bounds import check_crop, check_seed, check_size, one_of
from ..defaults import DEFAULT_SEED
from ..errors import ConfigError, LayerError
from ..settings import compare_field, load_field, resolved_field
from .attention import AttentionMetric
from .base import FeatureSettings
from .conditioning import ClassConditioning

DEFAULT_DIT_LAYER = "block14"  # the middle of DiT-XL/2's 28 blocks (the authors published no setting)


@dataclasses.dataclass(frozen=True)
class DiTSettings(FeatureSettings):
    """Settings of DiffSim on a DiT."""

    model: str | os.PathLike | None = load_field(DEFAULT_DIT)
    layer: str | tuple[str, ...] = resolved_field(DEFAULT_DIT_LAYER)  # blockL, an index, or transformer_blocks.L.attn1
    timestep: int | None = resolved_field(None)  # the actual T of the DiT's schedule
    step: int | None = resolved_field(None)  # the paper's index K: T = scheduler.timesteps[K] (DDIM: 999 - K)
    class_label: int | str = resolved_field(DEFAULT_CLASS)  # ImageNet id or label name
    size: int | None = resolved_field(None)  # None: the model's native size (256 or 512)
    seed: int = DEFAULT_SEED
    single_branch: bool = False  # the class branch only (no null-class branch)
    similarity: str = compare_field("cosine")
    crop: str = "none"

    exclusive: ClassVar[tuple[frozenset[str], ...]] = (frozenset({"timestep", "step"}),)

    def normalise(self) -> None:
        if isinstance(self.layer, (list, tuple)):
            self._set("layer", tuple(str(x) for x in self.layer))
        elif isinstance(self.layer, int) and not isinstance(self.layer, bool):
            self._set("layer", f"block{self.layer}")
        self._set("single_branch", bool(self.single_branch))

    def validate(self) -> None:
        super().validate()
        names = (self.layer,) if isinstance(self.layer, str) else self.layer
        if not names or not all(isinstance(n, str) for n in names):
            raise LayerError(f"layer must be a layer name or a list of layer names; got {self.layer!r}")
        if self.timestep is not None and self.step is not None:
            raise ConfigError("give either timestep (the actual T) or step (the paper's index), not both")
        if isinstance(self.class_label, bool) or not isinstance(self.class_label, (int, str)):
            raise ConfigError(f"class_label must be an ImageNet class id or label name; got {self.class_label!r}")
        if self.size is not None:
            check_size(self.size, 1, 32, "the latent must give at least 2 x 2 patches")
        check_seed("seed", self.seed)
        one_of("similarity", self.similarity, SIMILARITIES)
        check_crop(self.crop)

    @property
    def higher_is_better(self) -> bool:
        return self.similarity == "cosine"

    @property
    def layer_names(self) -> list[str]:
        return [self.layer] if isinstance(self.layer, str) else list(self.layer)


class DiffSimDiT(AttentionMetric):
    """DiffSim on a DiT's self-attention (class-conditioned: ``class_label``, no prompt, no masks)."""

    Settings = DiTSettings
    settings: DiTSettings
    default_name = "diffsim-dit"
    default_model = DEFAULT_DIT
    backbone_class = DiTBackbone
    conditioning = ClassConditioning()
