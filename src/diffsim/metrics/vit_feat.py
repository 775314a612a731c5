"""Plain-feature ablations (paper Table 3): cosine of one layer's flattened features, no alignment.

``feature="output"`` is the layer's output (residual stream, CLS included; the authors' CLIP
features); ``"attention"`` is the attention context before the output projection (the authors'
DINOv2 features), computed from the layer's normalised input.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from ..aas import attend
from ..backbones.vit import DEFAULT_CLIP, DEFAULT_DINOV2
from ..bounds import check_int, one_of
from ..features import Features
from .cosine import VectorCosine
from .vit import ViTMetric, ViTSettings

FEATURES = ("output", "attention")


@dataclasses.dataclass(frozen=True)
class ViTFeatureSettings(ViTSettings):
    layer: int = -1
    feature: str | None = None  # "output" or "attention"; None: the family's default (CLIP output, DINOv2 attention)

    def validate(self) -> None:
        super().validate()
        check_int("layer", self.layer)
        if self.feature is not None:
            one_of("feature", self.feature, FEATURES)


class ViTFeatures(VectorCosine, ViTMetric):
    """Cosine of flattened layer features; higher is more similar."""

    Settings = ViTFeatureSettings
    settings: ViTFeatureSettings
    default_feature: ClassVar[str] = "output"

    def setup(self) -> None:
        self.layer = self.backbone.layer_index(self.settings.layer)
        self.feature = self.settings.feature or self.default_feature

    def feature_resolved(self) -> dict[str, Any]:
        return {**super().feature_resolved(), "layer": self.layer, "feature": self.feature}

    def forward(self, pixels: torch.Tensor) -> Features:
        cap = self.backbone.capture(pixels, self.layer)
        if self.feature == "output":
            return Features({"feat": cap.output})
        f = self.backbone.qkv(cap, self.layer, "normed")
        ctx = attend(f.q, f.k, f.v)  # (N, H, T, D)
        n, h, t, d = ctx.shape
        return Features({"feat": ctx.transpose(1, 2).reshape(n, t, h * d).to(cap.output.dtype)})

    def vector(self, feats: Features) -> torch.Tensor:
        return feats.tensors["feat"]


class CLIPFeatures(ViTFeatures):
    default_name = "clip-feat"
    family = "clip"
    default_model = DEFAULT_CLIP
    default_feature = "output"


class DINOv2Features(ViTFeatures):
    default_name = "dinov2-feat"
    family = "dinov2"
    default_model = DEFAULT_DINOV2
    default_feature = "attention"
