"""Shared base of the metrics on a CLIP / DINOv2 image encoder: settings, preprocessing, loading.

Preprocessing (documented, as in the official processors): shortest side to ``resize`` with bicubic
resampling, centre crop ``size`` x ``size``, then the family's mean/std (CLIP: 224 / 224 with the
CLIP mean/std; DINOv2: 256 / 224 with ImageNet mean/std).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from ..backbones.vit import RESIZE, ViTBackbone
from ..bounds import check_size_range, positive_int
from ..errors import ConfigError
from ..preprocess import ResizeCrop
from ..settings import runtime_field
from .base import FeatureMetric, FeatureSettings


@dataclasses.dataclass(frozen=True)
class ViTSettings(FeatureSettings):
    """Settings of every CLIP / DINOv2 metric (``model=None``: the metric's default checkpoint)."""

    size: int = 224  # centre-crop size
    resize: int | None = None  # shortest side before the crop; None: the family's ratio (CLIP 1, DINOv2 256/224)
    batch_size: int = runtime_field(16)

    def validate(self) -> None:
        super().validate()
        positive_int("size", self.size)
        check_size_range(self.size, 1)
        if self.resize is not None:
            positive_int("resize", self.resize)
            check_size_range(self.resize, 1)
            if self.resize < self.size:
                raise ConfigError(f"resize ({self.resize}) must be at least the crop size ({self.size})")


class ViTMetric(FeatureMetric):
    """Base of the CLIP / DINOv2 metrics: subclasses define :meth:`forward` and :meth:`compare`."""

    Settings = ViTSettings
    settings: ViTSettings
    family: ClassVar[str] = "clip"

    @classmethod
    def load_backbone(cls, settings: ViTSettings) -> ViTBackbone:
        return ViTBackbone.from_pretrained(
            settings.model or cls.default_model,
            cls.family,
            device=settings.device,
            dtype=settings.dtype,
            revision=settings.revision,
        )

    @property
    def size(self) -> int:
        return self.settings.size

    @property
    def resize(self) -> int:
        s = self.settings
        return s.resize if s.resize is not None else max(s.size, RESIZE[self.family] * s.size // 224)

    @property
    def preprocessor(self) -> ResizeCrop:
        return ResizeCrop(self.resize, self.size)

    def feature_resolved(self) -> dict[str, Any]:
        return {"family": self.family, "resize": self.resize}

    def resolved(self) -> dict[str, Any]:
        return {"family": self.family, "resize": self.resize}
