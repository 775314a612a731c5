"""DISTS (Ding et al., TPAMI 2020): structure + texture similarity on VGG16 as a *distance* (0 = identical).

Re-implemented on torchvision VGG16 (its ImageNet weights, as the authors) with every max-pool replaced by
L2 pooling (3 x 3 Hann window, stride 2). Features: the input itself and the five stage outputs (relu1_2
... relu5_3). Per channel, with ``c = 1e-6``, structure ``(2 mu_x mu_y + c) / (mu_x^2 + mu_y^2 + c)`` and
texture ``(2 cov_xy + c) / (var_x + var_y + c)`` over the spatial positions; the learned weights alpha
(structure) and beta (texture) are divided by their total, and ``DISTS = 1 - sum(alpha S + beta T)``.
alpha / beta come from the authors' ``weights.pt`` (the MIT ``DISTS_pytorch`` wheel ships it: extra
``diffsim-metric[dists]``) or ``dists_weights=PATH`` (theirs, or piq's ``dists_weights.pt``).
Images are prepared as the authors' ``prepare_image(resize=True)`` does by default (``size=None``): the
shorter side to 256 where it is longer (bilinear, torchvision ``resize``: the aspect ratio kept, the long side
truncated), else the image as it is; the two images of a pair must then have one size, as theirs must.
``size=N`` squashes every image to N x N instead (any sizes compare; this project's default before 0.x).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones.peer_weights import weight_file
from ..backbones.torchvision_nets import TorchvisionBackbone
from ..backbones.vit import IMAGENET_MEAN, IMAGENET_STD
from ..bounds import path_like, positive_int
from ..errors import ModelNotFoundError
from ..features import Features
from ..preprocess import Resize, ShorterSide
from ..settings import load_field
from ..similarity import pin_identity, same_rows
from .base import FeatureMetric, RunSettings

CHANNELS = (3, 64, 128, 256, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in VGG16.features
POOLS = (4, 9, 16, 23)
C = 1e-6
SIDE = 256  # the authors' prepare_image(resize=True): the shorter side to 256 where it is longer
WEIGHT_FILES = ("weights.pt", "dists_weights.pt")  # the authors' name, piq's name (in a folder or hub repo)


def dists_weights_path() -> Path:
    """The authors' alpha / beta file shipped in the ``DISTS_pytorch`` wheel (located, not imported)."""
    spec = importlib.util.find_spec("DISTS_pytorch")
    tried = "the DISTS_pytorch package (not installed)"
    if spec is not None and spec.submodule_search_locations:
        p = Path(list(spec.submodule_search_locations)[0]) / "weights.pt"
        if p.is_file():
            return p
        tried = str(p)
    raise ModelNotFoundError(
        f"DISTS needs its learned alpha/beta weights; looked in {tried}",
        hint="pip install \"diffsim-metric[dists]\", or pass dists_weights='/path/to/weights.pt'",
        cli_hint='pip install "diffsim-metric[dists]", or pass --set dists_weights=/path/to/weights.pt',
    )


def load_alpha_beta(path: str | os.PathLike | None) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha and beta, each (1475,), divided by the sum of both (``path``: a file, folder or hub id)."""
    if path is None:
        p = dists_weights_path()
    else:
        fix = "pass dists_weights='/path/to/weights.pt' (the authors' file, or piq's dists_weights.pt)"
        p = weight_file(path, WEIGHT_FILES, "DISTS", fix, fix.replace("dists_weights='", "--set dists_weights='"))
    try:
        w = torch.load(p, map_location="cpu", weights_only=True)
        alpha, beta = w["alpha"].reshape(-1).float(), w["beta"].reshape(-1).float()
    except Exception as exc:
        raise ModelNotFoundError(f"could not read DISTS alpha/beta from {p}: {exc}") from exc
    if alpha.numel() != sum(CHANNELS) or beta.numel() != sum(CHANNELS):
        raise ModelNotFoundError(f"{p}: alpha and beta must have {sum(CHANNELS)} values each")
    total = alpha.sum() + beta.sum()
    return alpha / total, beta / total


class L2Pool(nn.Module):
    """L2 pooling: ``sqrt(conv(x^2, hann 3x3, stride 2, pad 1) + 1e-12)`` per channel."""

    kernel: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        a = torch.hann_window(5, periodic=False, dtype=torch.float64)[1:-1]
        g = a[:, None] * a[None, :]
        self.register_buffer("kernel", (g / g.sum()).float()[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(x.dtype).expand(x.shape[1], 1, 3, 3)
        return (F.conv2d(x * x, k, stride=2, padding=1, groups=x.shape[1]) + 1e-12).sqrt()


@dataclasses.dataclass(frozen=True)
class DISTSSettings(RunSettings):
    weights: str | os.PathLike | None = load_field(
        "imagenet"
    )  # VGG16: torchvision ImageNet, a .pth file, or None (random)
    dists_weights: str | os.PathLike | None = load_field(None)  # alpha/beta .pt; None: the DISTS_pytorch wheel's
    size: int | None = None  # None: the authors' shorter side to 256, aspect kept; N: squash to N x N

    def validate(self) -> None:
        super().validate()
        path_like("dists_weights", self.dists_weights)
        if self.size is not None:
            positive_int("size", self.size)

    @property
    def higher_is_better(self) -> bool:
        return False


class DISTS(FeatureMetric):
    """DISTS distance; ``compare`` returns (N,) values in about [0, 1], lower is more similar."""

    Settings = DISTSSettings
    settings: DISTSSettings
    default_name = "dists"

    @classmethod
    def load_backbone(cls, settings: DISTSSettings) -> TorchvisionBackbone:
        alpha, beta = load_alpha_beta(settings.dists_weights)
        bb = TorchvisionBackbone.from_pretrained("vgg16", settings.weights, settings.device, settings.dtype)
        return dataclasses.replace(bb, extra={"alpha": alpha, "beta": beta})

    def setup(self) -> None:
        self.alpha = torch.split(self.backbone.extra["alpha"].to(self.device), list(CHANNELS))
        self.beta = torch.split(self.backbone.extra["beta"].to(self.device), list(CHANNELS))
        self.l2pool = L2Pool().to(self.device)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @property
    def preprocessor(self) -> Resize | ShorterSide:
        return ShorterSide(SIDE) if self.settings.size is None else Resize(self.settings.size)

    def feature_resolved(self) -> dict[str, Any]:
        return {"backbone": self.backbone.identity}

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> Features:
        """The input and the five stage outputs (full maps: the texture term needs both images' maps)."""
        x = pixels.to(self.device)
        out = {"f0": x.to(self.dtype)}
        h = ((x - self.mean) / self.std).to(self.dtype)
        for i, layer in enumerate(self.backbone.features[: TAPS[-1] + 1]):
            h = self.l2pool(h) if i in POOLS else layer(h)
            if i in TAPS:
                out[f"f{TAPS.index(i) + 1}"] = h
        return Features(out)

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        self.check_pair(a, b)
        total = None
        for k in range(len(CHANNELS)):
            x, y = a.tensors[f"f{k}"].float(), b.tensors[f"f{k}"].float()
            mx, my = x.mean((2, 3)), y.mean((2, 3))
            vx = (x - mx[..., None, None]).pow(2).mean((2, 3))
            vy = (y - my[..., None, None]).pow(2).mean((2, 3))
            cov = (x * y).mean((2, 3)) - mx * my
            s = (2 * mx * my + C) / (mx**2 + my**2 + C)
            t = (2 * cov + C) / (vx + vy + C)
            v = s @ self.alpha[k] + t @ self.beta[k]
            total = v if total is None else total + v
        assert total is not None
        same = torch.stack([same_rows(a.tensors[f"f{k}"], b.tensors[f"f{k}"]) for k in range(len(CHANNELS))]).all(0)
        return pin_identity((1 - total).clamp_min(0.0), same, 0.0)  # >= 0; exactly 0 for the same features
