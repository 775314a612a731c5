"""LPIPS v0.1 (Zhang et al. 2018): a learned perceptual *distance* (lower is more similar, 0 = identical).

Re-implemented on torchvision VGG16 / AlexNet: the input in [-1, 1] goes through LPIPS' scaling
layer; at five ReLU outputs the activations are unit-normalised over channels; the distance is the sum
over layers of the spatial mean of ``sum_c w_c (f_a - f_b)^2``, with the official v0.1 linear weights
``w`` read from the BSD-2 ``lpips`` wheel (extra ``diffsim-metric[lpips]``) or from ``lin_weights=PATH``.
By default (``size=None``) images are compared at their own resolution, as the ``lpips`` package and
torchmetrics do (the two images of a pair must have one size, as there); ``size=N`` squashes both to N x N
(Lanczos). The DiffSim paper's protocol, VGG at 512 x 512, is the preset ``lpips-vgg-512`` (its Table 1 row).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Any

import torch

from ..backbones.torchvision_nets import SCALE, SHIFT, TorchvisionBackbone
from ..bounds import check_size_range, one_of, path_like, positive_int
from ..errors import ModelNotFoundError
from ..features import Features
from ..functional.scores import lpips
from ..preprocess import Resize, ShorterSide
from ..settings import load_field
from .base import FeatureMetric, RunSettings

NETS = {"vgg": ("vgg16", (3, 8, 15, 22, 29)), "alex": ("alexnet", (1, 4, 7, 9, 11))}


def lpips_weights_path(net: str) -> Path:
    """The v0.1 linear-head weights shipped in the ``lpips`` package (not imported, only located)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "LPIPS needs the official linear-head weights from the lpips package (BSD-2, ships them in its wheel)",
            hint="pip install \"diffsim-metric[lpips]\", or pass lin_weights='/path/to/v0.1/<net>.pth'",
            cli_hint='pip install "diffsim-metric[lpips]", or pass --set lin_weights=/path/to/v0.1/<net>.pth',
        )
    p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{net}.pth"
    if not p.is_file():
        raise ModelNotFoundError(
            f"lpips is installed but {p} is missing",
            hint="reinstall lpips or pass lin_weights='/path/to/v0.1/<net>.pth'",
            cli_hint="reinstall lpips or pass --set lin_weights=/path/to/v0.1/<net>.pth",
        )
    return p


def load_linear_heads(net: str, lin_weights: str | os.PathLike | None) -> list[torch.Tensor]:
    """The five v0.1 linear-head weight vectors of ``net``."""
    path = Path(lin_weights) if lin_weights is not None else lpips_weights_path(net)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return [state[f"lin{i}.model.1.weight"].reshape(-1).float() for i in range(5)]
    except Exception as exc:
        raise ModelNotFoundError(f"could not read LPIPS linear weights from {path}: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class LPIPSSettings(RunSettings):
    net: str = load_field("vgg")  # or "alex"
    weights: str | os.PathLike | None = load_field("imagenet")  # torchvision ImageNet, a .pth file, or None (random)
    lin_weights: str | os.PathLike | None = load_field(None)  # None: the v0.1 heads shipped in the lpips wheel
    size: int | None = None  # None: the native resolution (the lpips package); N: squash to N x N

    def validate(self) -> None:
        super().validate()
        one_of("net", self.net, tuple(NETS))
        path_like("lin_weights", self.lin_weights)
        if self.size is not None:
            positive_int("size", self.size)
            check_size_range(self.size, 1)

    @property
    def higher_is_better(self) -> bool:
        return False


class LPIPS(FeatureMetric):
    """LPIPS distance; ``compare`` returns (N,) distances, lower is more similar."""

    Settings = LPIPSSettings
    settings: LPIPSSettings
    default_name = "lpips-vgg"

    @classmethod
    def load_backbone(cls, settings: LPIPSSettings) -> TorchvisionBackbone:
        lin = load_linear_heads(settings.net, settings.lin_weights)
        bb = TorchvisionBackbone.from_pretrained(
            NETS[settings.net][0], settings.weights, settings.device, settings.dtype
        )
        return dataclasses.replace(bb, extra={"lin": lin})

    def setup(self) -> None:
        self.taps = NETS[self.settings.net][1]
        self.lin = self.backbone.extra["lin"]
        self.shift = torch.tensor(SHIFT, device=self.device).view(1, 3, 1, 1)
        self.scale = torch.tensor(SCALE, device=self.device).view(1, 3, 1, 1)

    @property
    def preprocessor(self) -> Resize | ShorterSide:
        return ShorterSide(None) if self.settings.size is None else Resize(self.settings.size)

    def feature_resolved(self) -> dict[str, Any]:
        return {"backbone": self.backbone.source}

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> Features:
        """Channel-normalised activations at the five taps (large: cache them only for small sets)."""
        x = ((pixels.to(self.device) * 2 - 1 - self.shift) / self.scale).to(self.dtype)
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.backbone.features[: self.taps[-1] + 1]):
            x = layer(x)
            if i in self.taps:
                k = self.taps.index(i)
                f = x.float()
                out[f"f{k}"] = (f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)).to(self.dtype)
        return Features(out)

    is_differentiable = True

    def differentiable_scores(
        self, x: torch.Tensor, y: torch.Tensor, noise: Any = None, checkpoint: bool = False
    ) -> torch.Tensor:
        """:func:`diffsim.functional.lpips` with this metric's network, heads and size (``noise``: unused)."""
        return lpips(x, y, self.backbone.features, self.lin, self.taps, size=self.settings.size)

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        self.check_pair(a, b)
        total = None
        for k, w in enumerate(self.lin):
            d = (a.tensors[f"f{k}"].float() - b.tensors[f"f{k}"].float()).pow(2)
            v = torch.einsum("nchw,c->nhw", d, w.to(d.device)).mean(dim=(1, 2))
            total = v if total is None else total + v
        assert total is not None
        return total
