"""Gram-matrix style similarity (Gatys et al.) on torchvision VGG19, as the paper's Gram baseline.

Image: shortest side to ``size`` (bicubic) and a centred ``size`` crop, ImageNet mean/std (the authors
resize the short side to 512 without cropping; the crop keeps batches rectangular). Features of
``layer`` (default ``conv5_1``, pre-ReLU, as the authors), Gram ``G = F F^T / (H W)``; the score is
the cosine of the flattened Gram matrices (``rows="all"``). ``rows="last"`` reproduces the authors'
code, which compares only the last row of G (official spec 5, a bug).
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn

from ..backbones.torchvision_nets import load_features
from ..backbones.vit import IMAGENET_MEAN, IMAGENET_STD
from ..cache import DEFAULT_MEMORY_BYTES, FeatureCache
from ..devices import dtype_name
from ..errors import ConfigError, LayerError
from ..features import Features
from ..images import ImagesLike, check_size, to_unit_resized
from .base import Metric, embed_cached
from .vit import cosine_matrix, cosine_rows

ROWS = ("all", "last")


def vgg_layer_names(features: nn.Sequential) -> dict[str, int]:
    """{'conv1_1': 0, 'relu1_1': 1, ..., 'pool5': 36} for a VGG features stack."""
    names, block, conv = {}, 1, 0
    for i, m in enumerate(features):
        if isinstance(m, nn.Conv2d):
            conv += 1
            names[f"conv{block}_{conv}"] = i
        elif isinstance(m, nn.ReLU):
            names[f"relu{block}_{conv}"] = i
        elif isinstance(m, nn.MaxPool2d):
            names[f"pool{block}"] = i
            block, conv = block + 1, 0
    return names


class Gram(Metric):
    """Cosine of VGG Gram matrices; higher is more similar."""

    name = "gram"
    higher_is_better = True

    def __init__(self, features: nn.Sequential, layer: str = "conv5_1", size: int = 512, rows: str = "all",
                 batch_size: int = 4, cache: FeatureCache | None = None, source: str = "") -> None:
        table = vgg_layer_names(features)
        if layer not in table:
            raise LayerError(f"unknown VGG layer {layer!r}; choose one of {', '.join(table)}")
        if rows not in ROWS:
            raise ConfigError(f"rows must be one of {', '.join(ROWS)}; got {rows!r}")
        self.features, self.layer, self.index, self.rows = features, layer, table[layer], rows
        self.size = check_size(size, 1)
        p = next(features.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.batch_size = batch_size
        self.cache = cache if cache is not None else FeatureCache()
        self.source = source
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_pretrained(cls, weights: str | os.PathLike | None = "imagenet", layer: str = "conv5_1",
                        size: int = 512, rows: str = "all", device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, batch_size: int = 4,
                        cache_dir: str | os.PathLike | None = None, cache_bytes: int = DEFAULT_MEMORY_BYTES,
                        **_: Any) -> "Gram":
        feats = load_features("vgg19", weights, device, dtype)
        return cls(feats, layer, size, rows, batch_size, FeatureCache(cache_bytes, cache_dir), feats.identity)

    def feature_config(self) -> dict[str, Any]:
        return {"metric": self.name, "backbone": self.source, "layer": self.layer, "size": self.size,
                "dtype": dtype_name(self.dtype)}

    @property
    def config(self) -> dict[str, Any]:
        return {**self.feature_config(), "rows": self.rows, "higher_is_better": True}

    def __repr__(self) -> str:
        return f"Gram(layer={self.layer!r}, size={self.size}, rows={self.rows!r}, backbone={self.source!r})"

    def embed(self, images: ImagesLike, progress: bool = False) -> Features:
        return embed_cached(images, self.feature_config(),
                            lambda im, i: to_unit_resized(im, self.size, self.size, i),
                            self._compute, self.cache, self.batch_size, self.device, progress)

    @torch.no_grad()
    def _compute(self, unit: torch.Tensor) -> Features:
        x = ((unit.to(self.device) - self.mean) / self.std).to(self.dtype)
        f = self.features[: self.index + 1](x).float()
        n, c, h, w = f.shape
        f = f.reshape(n, c, h * w)
        return Features({"gram": f @ f.transpose(1, 2) / (h * w)})

    def _pick(self, f: Features) -> torch.Tensor:
        g = f.tensors["gram"]
        return g[:, -1] if self.rows == "last" else g

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        if dict(a.config) != dict(b.config):
            raise ConfigError("features were computed with different Gram settings; embed both with this metric")
        return cosine_rows(self._pick(a), self._pick(b))

    def compare_matrix(self, a: Features, b: Features) -> torch.Tensor:
        if dict(a.config) != dict(b.config):
            raise ConfigError("features were computed with different Gram settings; embed both with this metric")
        return cosine_matrix(self._pick(a), self._pick(b))
