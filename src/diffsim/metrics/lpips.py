"""LPIPS v0.1 (Zhang et al. 2018): a learned perceptual *distance* (lower is more similar, 0 = identical).

Re-implemented on torchvision VGG16 / AlexNet: the input in [-1, 1] goes through LPIPS' scaling
layer; at five ReLU outputs the activations are unit-normalised over channels; the distance is the sum
over layers of the spatial mean of ``sum_c w_c (f_a - f_b)^2``, with the official v0.1 linear weights
``w`` read from the BSD-2 ``lpips`` wheel (``pip install lpips``) or from ``lin_weights=PATH``.
The authors use ``net='vgg'`` at 512 x 512 (Lanczos), which are the defaults here.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..backbones.torchvision_nets import load_features
from ..cache import DEFAULT_MEMORY_BYTES, FeatureCache
from ..devices import dtype_name
from ..errors import ConfigError, ModelNotFoundError
from ..features import Features
from ..images import ImagesLike, check_size, to_unit_tensor
from .base import Metric, embed_cached

NETS = {"vgg": ("vgg16", (3, 8, 15, 22, 29)), "alex": ("alexnet", (1, 4, 7, 9, 11))}
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def lpips_weights_path(net: str) -> Path:
    """The v0.1 linear-head weights shipped in the ``lpips`` package (not imported, only located)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError("LPIPS needs the official linear-head weights: `pip install lpips` (BSD-2, ships "
                                 "them in its wheel) or pass lin_weights=/path/to/v0.1/<net>.pth")
    p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{net}.pth"
    if not p.is_file():
        raise ModelNotFoundError(f"lpips is installed but {p} is missing; reinstall lpips or pass lin_weights=")
    return p


class LPIPS(Metric):
    """LPIPS distance; ``compare`` returns (N,) distances, lower is more similar."""

    name = "lpips"
    higher_is_better = False

    def __init__(self, features: nn.Sequential, lin: list[torch.Tensor], net: str = "vgg", size: int = 512,
                 batch_size: int = 4, cache: FeatureCache | None = None, source: str = "") -> None:
        if net not in NETS:
            raise ConfigError(f"net must be one of {', '.join(NETS)}; got {net!r}")
        self.net, self.features, self.size = net, features, check_size(size, 1)
        self.taps = NETS[net][1]
        self.lin = [w.reshape(-1).float() for w in lin]
        p = next(features.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.batch_size = batch_size
        self.cache = cache if cache is not None else FeatureCache()
        self.source = source
        self.shift = torch.tensor(SHIFT, device=self.device).view(1, 3, 1, 1)
        self.scale = torch.tensor(SCALE, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_pretrained(cls, net: str = "vgg", weights: str | os.PathLike | None = "imagenet",
                        lin_weights: str | os.PathLike | None = None, size: int = 512,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        batch_size: int = 4, cache_dir: str | os.PathLike | None = None,
                        cache_bytes: int = DEFAULT_MEMORY_BYTES, **_: Any) -> "LPIPS":
        """Backbone from torchvision (``weights``: 'imagenet', a .pth path, or None = random) + v0.1 heads."""
        if net not in NETS:
            raise ConfigError(f"net must be one of {', '.join(NETS)}; got {net!r}")
        path = Path(lin_weights) if lin_weights is not None else lpips_weights_path(net)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            lin = [state[f"lin{i}.model.1.weight"] for i in range(5)]
        except Exception as exc:
            raise ModelNotFoundError(f"could not read LPIPS linear weights from {path}: {exc}") from exc
        feats = load_features(NETS[net][0], weights, device, dtype)
        return cls(feats, lin, net, size, batch_size, FeatureCache(cache_bytes, cache_dir), feats.identity)

    def feature_config(self) -> dict[str, Any]:
        return {"metric": self.name, "net": self.net, "backbone": self.source, "size": self.size,
                "dtype": dtype_name(self.dtype)}

    @property
    def config(self) -> dict[str, Any]:
        return {**self.feature_config(), "higher_is_better": False}

    def __repr__(self) -> str:
        return f"LPIPS(net={self.net!r}, size={self.size}, backbone={self.source!r})"

    def embed(self, images: ImagesLike, progress: bool = False) -> Features:
        """Channel-normalised activations at the five taps (large: cache them only for small sets)."""
        return embed_cached(images, self.feature_config(), lambda im, i: to_unit_tensor(im, self.size, "none", i),
                            self._compute, self.cache, self.batch_size, self.device, progress)

    @torch.no_grad()
    def _compute(self, unit: torch.Tensor) -> Features:
        x = ((unit.to(self.device) * 2 - 1 - self.shift) / self.scale).to(self.dtype)
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features[: self.taps[-1] + 1]):
            x = layer(x)
            if i in self.taps:
                k = self.taps.index(i)
                f = x.float()
                out[f"f{k}"] = (f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)).to(self.dtype)
        return Features(out)

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        if dict(a.config) != dict(b.config):
            raise ConfigError("features were computed with different LPIPS settings; embed both with this metric")
        total = None
        for k, w in enumerate(self.lin):
            d = (a.tensors[f"f{k}"].float() - b.tensors[f"f{k}"].float()).pow(2)
            v = torch.einsum("nchw,c->nhw", d, w.to(d.device)).mean(dim=(1, 2))
            total = v if total is None else total + v
        return total
