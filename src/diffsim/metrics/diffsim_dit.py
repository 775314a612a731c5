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
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from .. import aas
from ..backbones.dit import DEFAULT_CLASS, DEFAULT_DIT, DiTBackbone
from ..bounds import check_seed
from ..errors import ConfigError, LayerError
from ..features import Features
from ..images import ImagesLike, check_crop, check_size
from ..preprocess import Resize
from ..settings import one_of
from .base import FeatureMetric, FeatureSettings
from .diffsim_s import DEFAULT_SEED, DEFAULT_STEP, DiffSim

DEFAULT_DIT_LAYER = "block14"  # the middle of DiT-XL/2's 28 blocks (the authors published no setting)


@dataclasses.dataclass(frozen=True)
class DiTSettings(FeatureSettings):
    """Settings of DiffSim on a DiT."""

    model: str | os.PathLike | None = DEFAULT_DIT
    layer: str | tuple[str, ...] = DEFAULT_DIT_LAYER  # blockL, a block index, or transformer_blocks.L.attn1
    timestep: int | None = None  # the actual T of the DiT's schedule
    step: int | None = None  # the paper's index K: T = scheduler.timesteps[K] (DDIM: 999 - K); default 500
    class_label: int | str = DEFAULT_CLASS  # ImageNet id or label name
    size: int | None = None  # None: the model's native size (256 or 512)
    seed: int = DEFAULT_SEED
    single_branch: bool = False  # the class branch only (no null-class branch)
    similarity: str = "cosine"
    crop: str = "none"

    compare_only: ClassVar[frozenset[str]] = frozenset({"similarity"})
    exclusive: ClassVar[tuple[frozenset[str], ...]] = (frozenset({"timestep", "step"}),)
    #: resolved against the model (module paths, actual T, class id, native size) for the feature config
    resolved_by_model: ClassVar[frozenset[str]] = frozenset({"layer", "timestep", "step", "class_label", "size"})

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
        one_of("similarity", self.similarity, aas.SIMILARITIES)
        check_crop(self.crop)

    @property
    def higher_is_better(self) -> bool:
        return self.similarity == "cosine"

    @property
    def layer_names(self) -> list[str]:
        return [self.layer] if isinstance(self.layer, str) else list(self.layer)

    def feature_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().feature_dict().items() if k not in self.resolved_by_model}


class DiffSimDiT(DiffSim):
    """DiffSim on a DiT's self-attention; compare / matrix / token maps as DiffSim-S."""

    Settings = DiTSettings  # type: ignore[assignment]
    settings: DiTSettings  # type: ignore[assignment]
    default_name = "diffsim-dit"
    default_model = DEFAULT_DIT
    accepts_prompt = False
    accepts_masks = False
    embed_options = ()  # type: ignore[assignment]

    @classmethod
    def load_backbone(cls, settings: DiTSettings) -> DiTBackbone:  # type: ignore[override]
        return DiTBackbone.from_pretrained(
            settings.model or cls.default_model,
            device=settings.device,
            dtype=settings.dtype,
            revision=settings.revision,
        )

    def setup(self) -> None:
        s, bb = self.settings, self.backbone
        self._size = s.size if s.size is not None else bb.default_size
        check_size(self._size, bb.latent_factor * bb.patch_size)
        step = s.step if s.timestep is not None or s.step is not None else DEFAULT_STEP
        self.timestep = bb.timestep(timestep=s.timestep, step=None if s.timestep is not None else step)
        self.step = None if s.timestep is not None else step
        self.class_id = bb.class_id(s.class_label)
        self.layer_names = s.layer_names
        self.layers = bb.resolve(self.layer_names)
        self.compare_dtype = None  # compare in float32

    size = property(lambda self: self._size)
    prompt = property(lambda self: None)

    def resolved(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "timestep": self.timestep,
            "step": self.step,
            "class_id": self.class_id,
            "size": self._size,
        }

    def feature_resolved(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "timestep": self.timestep,
            "class_id": self.class_id,
            "size": self._size,
            "branches": 1 if self.single_branch else 2,
        }

    @property
    def preprocessor(self) -> Resize:
        return Resize(self._size, self.crop, signed=True)

    def forward(self, pixels: torch.Tensor) -> Features:  # type: ignore[override]
        qkv = self.backbone.extract(
            pixels, self.layers, self.timestep, self.class_id, self.seed, single_branch=self.single_branch
        )
        tensors: dict[str, torch.Tensor] = {}
        for path, f in qkv.items():
            tensors[f"{path}/q"], tensors[f"{path}/k"], tensors[f"{path}/v"] = f.q, f.k, f.v
        return Features(tensors)

    def embed(  # type: ignore[override]  # masks are not offered on a DiT
        self,
        images: ImagesLike,
        progress: bool = False,
        prompt: str | None = None,
        **options: Any,
    ) -> Features:
        """Q/K/V features of each image at the metric's blocks (one truncated DiT pass per distinct image).

        ``prompt`` is accepted as None only (callers written for DiffSim-S pass it): a DiT is
        class-conditioned, see the ``class_label`` setting.
        """
        if prompt is not None:
            raise ConfigError(
                f"{self.name} takes no prompt: a DiT is conditioned on a class (class_label=...); got prompt={prompt!r}"
            )
        return FeatureMetric.embed(self, images, progress, **options)

    def finish(self, feats: Features, images: Sequence[Any], **options: Any) -> Features:  # type: ignore[override]
        return feats
