"""Gram-matrix style similarity (Gatys et al.) on torchvision VGG19, as the paper's Gram baseline.

Image: shortest side to ``size`` (bicubic) and a centred ``size`` crop, ImageNet mean/std (the authors
resize the short side to 512 without cropping; the crop keeps batches rectangular). Features of
``layer`` (default ``conv5_1``, pre-ReLU, as the authors), Gram ``G = F F^T / (H W)``; the score is
the cosine of the flattened Gram matrices (``rows="all"``). ``rows="last"`` reproduces the authors'
code, which compares only the last row of G (official spec 5, a bug).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.nn as nn

from ..backbones.torchvision_nets import TorchvisionBackbone
from ..backbones.vit import IMAGENET_MEAN, IMAGENET_STD
from ..bounds import check_size_range, one_of, positive_int
from ..errors import LayerError
from ..features import Features
from ..preprocess import ResizeCrop
from ..settings import compare_field, load_field
from .base import FeatureMetric, RunSettings
from .cosine import VectorCosine

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


@dataclasses.dataclass(frozen=True)
class GramSettings(RunSettings):
    weights: str | os.PathLike | None = load_field("imagenet")  # torchvision's ImageNet weights, a .pth file, or None
    layer: str = "conv5_1"
    size: int = 512
    rows: str = compare_field("all")  # "last": the authors' bug (only the last Gram row)

    def validate(self) -> None:
        super().validate()
        positive_int("size", self.size)
        check_size_range(self.size, 1)
        one_of("rows", self.rows, ROWS)


class Gram(VectorCosine, FeatureMetric):
    """Cosine of VGG Gram matrices; higher is more similar."""

    Settings = GramSettings
    settings: GramSettings
    default_name = "gram"

    @classmethod
    def load_backbone(cls, settings: GramSettings) -> TorchvisionBackbone:
        return TorchvisionBackbone.from_pretrained("vgg19", settings.weights, settings.device, settings.dtype)

    def setup(self) -> None:
        table = vgg_layer_names(self.backbone.features)
        if self.settings.layer not in table:
            raise LayerError(f"unknown VGG layer {self.settings.layer!r}; choose one of {', '.join(table)}")
        self.index = table[self.settings.layer]
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @property
    def preprocessor(self) -> ResizeCrop:
        return ResizeCrop(self.settings.size, self.settings.size)

    def feature_resolved(self) -> dict[str, Any]:
        return {"backbone": self.backbone.source}

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> Features:
        x = ((pixels.to(self.device) - self.mean) / self.std).to(self.dtype)
        f = self.backbone.features[: self.index + 1](x).float()
        n, c, h, w = f.shape
        f = f.reshape(n, c, h * w)
        return Features({"gram": f @ f.transpose(1, 2) / (h * w)})

    def vector(self, f: Features) -> torch.Tensor:
        g = f.tensors["gram"]
        return g[:, -1] if self.settings.rows == "last" else g
