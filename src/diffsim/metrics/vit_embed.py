"""CLIP-I and DINOv2: cosine similarity of global image embeddings.

* ``clip-i``: the projected CLIP image embedding (``get_image_features``), cosine in [-1, 1]. The
  authors report ``100 * cosine``; pass ``scale=100`` to get their numbers.
* ``dinov2``: the CLS token after DINOv2's final LayerNorm, cosine in [-1, 1] (authors: ``100 *``).
"""
from __future__ import annotations

from typing import Any

import torch

from ..backbones.vit import DEFAULT_CLIP, DEFAULT_DINOV2
from ..errors import ConfigError
from ..features import Features
from .vit import ViTMetric, cosine_matrix, cosine_rows


class EmbeddingCosine(ViTMetric):
    """Cosine of the pooled embeddings, times ``scale`` (1 by default); higher is more similar."""

    def __init__(self, backbone, scale: float = 1.0, **kw: Any) -> None:
        super().__init__(backbone, **kw)
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or scale <= 0:
            raise ConfigError(f"scale must be a positive number; got {scale!r}")
        self.scale = float(scale)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.backbone.source!r}, size={self.size}, scale={self.scale})"

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "scale": self.scale}

    def _compute(self, unit: torch.Tensor) -> Features:
        return Features({"embedding": self.backbone.pooled(unit)})

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        self._check_pair(a, b)
        return self.scale * cosine_rows(a.tensors["embedding"], b.tensors["embedding"])

    def compare_matrix(self, a: Features, b: Features) -> torch.Tensor:
        self._check_pair(a, b)
        return self.scale * cosine_matrix(a.tensors["embedding"], b.tensors["embedding"])


class CLIPI(EmbeddingCosine):
    """CLIP-I (default ``openai/clip-vit-base-patch32``)."""

    name = "clip-i"
    family = "clip"
    default_model = DEFAULT_CLIP


class DINOv2(EmbeddingCosine):
    """DINOv2 CLS cosine (default ``facebook/dinov2-small``)."""

    name = "dinov2"
    family = "dinov2"
    default_model = DEFAULT_DINOV2
