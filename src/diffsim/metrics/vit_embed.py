"""CLIP-I, DINOv2 and DINOv3: cosine similarity of global image embeddings.

* ``clip-i``: the projected CLIP image embedding (``get_image_features``), cosine in [-1, 1]. The
  authors report ``100 * cosine``; pass ``scale=100`` to get their numbers.
* ``dinov2``: the CLS token after DINOv2's final LayerNorm, cosine in [-1, 1] (authors: ``100 *``).
* ``dinov3``: the CLS token after DINOv3's final LayerNorm (its ``pooler_output``), cosine in [-1, 1].
"""

from __future__ import annotations

import dataclasses

import torch

from ..backbones.vit import DEFAULT_CLIP, DEFAULT_DINOV2, DEFAULT_DINOV3
from ..errors import ConfigError
from ..features import Features
from ..settings import compare_field
from ..similarity import cosine_matrix, cosine_rows
from .vit import ViTMetric, ViTSettings


@dataclasses.dataclass(frozen=True)
class EmbeddingSettings(ViTSettings):
    scale: float = compare_field(1.0)  # multiply the cosine (100: the authors' numbers)

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool) or self.scale <= 0:
            raise ConfigError(f"scale must be a positive number; got {self.scale!r}")
        self._set("scale", float(self.scale))


class EmbeddingCosine(ViTMetric):
    """Cosine of the pooled embeddings, times ``scale`` (1 by default); higher is more similar."""

    Settings = EmbeddingSettings
    settings: EmbeddingSettings

    def forward(self, pixels: torch.Tensor) -> Features:
        return Features({"embedding": self.backbone.pooled(pixels)})

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        self.check_pair(a, b)
        return self.settings.scale * cosine_rows(a.tensors["embedding"], b.tensors["embedding"])

    def compare_matrix(self, a: Features, b: Features) -> torch.Tensor:
        self.check_pair(a, b)
        return self.settings.scale * cosine_matrix(a.tensors["embedding"], b.tensors["embedding"])


class CLIPI(EmbeddingCosine):
    """CLIP-I (default ``openai/clip-vit-base-patch32``)."""

    default_name = "clip-i"
    family = "clip"
    default_model = DEFAULT_CLIP


class DINOv2(EmbeddingCosine):
    """DINOv2 CLS cosine (default ``facebook/dinov2-small``)."""

    default_name = "dinov2"
    family = "dinov2"
    default_model = DEFAULT_DINOV2


class DINOv3(EmbeddingCosine):
    """DINOv3 CLS cosine (default ``facebook/dinov3-vits16-pretrain-lvd1689m``)."""

    default_name = "dinov3"
    family = "dinov3"
    default_model = DEFAULT_DINOV3
