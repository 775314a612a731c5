"""Shared plumbing for metrics on a CLIP / DINOv2 image encoder: preprocessing, cache, config checks.

Preprocessing (documented, as in the official processors): shortest side to ``resize`` with bicubic
resampling, centre crop ``size`` x ``size``, then the family's mean/std (CLIP: 224 / 224 with the
CLIP mean/std; DINOv2: 256 / 224 with ImageNet mean/std).
"""
from __future__ import annotations

import os
from typing import Any

import torch

from ..backbones.vit import ViTBackbone
from ..cache import DEFAULT_MEMORY_BYTES, FeatureCache
from ..errors import ConfigError
from ..features import Features
from ..images import ImagesLike, to_unit_resized
from .base import Metric, embed_cached

RESIZE = {"clip": 224, "dinov2": 256}


class ViTMetric(Metric):
    """Base of the CLIP / DINOv2 metrics: subclasses define :meth:`_compute` and :meth:`compare`."""

    family = "clip"
    default_model = ""

    def __init__(self, backbone: ViTBackbone, size: int = 224, resize: int | None = None, batch_size: int = 16,
                 cache: FeatureCache | None = None) -> None:
        self.backbone = backbone
        for what, v in (("size", size), ("resize", resize if resize is not None else size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{what} must be a positive integer; got {v!r}")
        self.size = size
        self.resize = resize if resize is not None else max(size, RESIZE[self.family] * size // 224)
        if self.resize < size:
            raise ConfigError(f"resize ({self.resize}) must be at least the crop size ({size})")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}")
        self.batch_size = batch_size
        self.cache = cache if cache is not None else FeatureCache()

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, revision: str | None = None, *,
                        cache_dir: str | os.PathLike | None = None, cache_bytes: int = DEFAULT_MEMORY_BYTES,
                        **settings: Any) -> "ViTMetric":
        """Load (or reuse) the encoder — hub id or local ``save_pretrained`` folder — and configure."""
        backbone = ViTBackbone.from_pretrained(model or cls.default_model, cls.family, device=device, dtype=dtype,
                                               revision=revision)
        return cls(backbone, cache=FeatureCache(cache_bytes, cache_dir), **settings)

    def settings(self) -> dict[str, Any]:
        """Metric-specific settings that change the features (added to the cache key)."""
        return {}

    def feature_config(self) -> dict[str, Any]:
        return {"metric": self.name, **self.backbone.describe(), "size": self.size, "resize": self.resize,
                **self.settings()}

    @property
    def config(self) -> dict[str, Any]:
        return {**self.feature_config(), "higher_is_better": self.higher_is_better}

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}(model={self.backbone.source!r}, size={self.size}{extra})"

    def embed(self, images: ImagesLike, progress: bool = False) -> Features:
        """Per-image features; each distinct image runs the encoder once per config."""
        fcfg = self.feature_config()
        return embed_cached(images, fcfg, lambda im, i: to_unit_resized(im, self.resize, self.size, i),
                            self._compute, self.cache, self.batch_size, self.backbone.device, progress)

    def _compute(self, unit: torch.Tensor) -> Features:
        raise NotImplementedError

    def _check_pair(self, a: Features, b: Features) -> None:
        if dict(a.config) != dict(b.config):
            diff = sorted(k for k in set(a.config) | set(b.config) if a.config.get(k) != b.config.get(k))
            raise ConfigError(f"features were computed with different settings ({', '.join(diff)}); "
                              "embed both sides with the same metric")
        if dict(a.config).get("metric") != self.name:
            raise ConfigError(f"features come from {a.config.get('metric')!r}, not {self.name!r}")


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Paired cosine of flattened rows (a batch of one broadcasts), float32, (N,)."""
    x, y = a.reshape(a.shape[0], -1).float(), b.reshape(b.shape[0], -1).float()
    return torch.nn.functional.cosine_similarity(x, y, dim=1, eps=1e-12)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All-pairs cosine of flattened rows, (N, M)."""
    x = torch.nn.functional.normalize(a.reshape(a.shape[0], -1).float(), dim=1, eps=1e-12)
    y = torch.nn.functional.normalize(b.reshape(b.shape[0], -1).float(), dim=1, eps=1e-12)
    return x @ y.T
