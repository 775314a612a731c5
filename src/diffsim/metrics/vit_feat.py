"""Plain-feature ablations (paper Table 3): cosine of one layer's flattened features, no alignment.

``feature="output"`` is the layer's output (residual stream, CLS included; the authors' CLIP
features); ``"attention"`` is the attention context before the output projection (the authors'
DINOv2 features), computed from the layer's normalised input.
"""
from __future__ import annotations

from typing import Any

import torch

from .. import aas
from ..backbones.vit import DEFAULT_CLIP, DEFAULT_DINOV2
from ..errors import ConfigError
from ..features import Features
from .vit import ViTMetric, cosine_matrix, cosine_rows

FEATURES = ("output", "attention")


class ViTFeatures(ViTMetric):
    """Cosine of flattened layer features; higher is more similar."""

    default_feature = "output"

    def __init__(self, backbone, layer: int = -1, feature: str | None = None, **kw: Any) -> None:
        super().__init__(backbone, **kw)
        self.layer = backbone.layer_index(layer)
        feature = feature or self.default_feature
        if feature not in FEATURES:
            raise ConfigError(f"feature must be one of {', '.join(FEATURES)}; got {feature!r}")
        self.feature = feature

    def settings(self) -> dict[str, Any]:
        return {"layer": self.layer, "feature": self.feature}

    def _compute(self, unit: torch.Tensor) -> Features:
        cap = self.backbone.capture(unit, self.layer)
        if self.feature == "output":
            return Features({"feat": cap.output})
        f = self.backbone.qkv(cap, self.layer, "normed")
        ctx = aas.attend(f.q, f.k, f.v)  # (N, H, T, D)
        n, h, t, d = ctx.shape
        return Features({"feat": ctx.transpose(1, 2).reshape(n, t, h * d).to(cap.output.dtype)})

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        self._check_pair(a, b)
        return cosine_rows(a.tensors["feat"], b.tensors["feat"])

    def compare_matrix(self, a: Features, b: Features) -> torch.Tensor:
        self._check_pair(a, b)
        return cosine_matrix(a.tensors["feat"], b.tensors["feat"])


class CLIPFeatures(ViTFeatures):
    name = "clip-feat"
    family = "clip"
    default_model = DEFAULT_CLIP
    default_feature = "output"


class DINOv2Features(ViTFeatures):
    name = "dinov2-feat"
    family = "dinov2"
    default_model = DEFAULT_DINOV2
    default_feature = "attention"
