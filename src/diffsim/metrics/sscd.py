"""SSCD (Pizzi et al., CVPR 2022): the copy-detection descriptor; cosine of normalised embeddings.

Architecture of the SSCD torchvision release: a torchvision ResNet-50 whose average pool is replaced by
GeM pooling (p = 3), its ``fc`` layer projecting 2048 -> 512, then L2 normalisation. Images are resized
to ``size`` x ``size`` (320: SSCD's ``skew_320`` preprocessing) and normalised with ImageNet statistics.

``model`` is a TorchScript file (``sscd_disc_mixup.torchscript.pt`` ...; run as released), a state dict of
that ResNet-50 (SSCD's ``sscd_disc_mixup.torchvision.pt``, keys under ``backbone.``; or any
``.pth``/``.safetensors`` with the torchvision keys), a folder or a hub repo id holding either; ``None``
(default): SSCD's recommended ``sscd_disc_mixup.torchscript.pt``, downloaded from the authors' release into
``<torch hub dir>/sscd`` on first use. The SSCD authors report that a cosine above 0.75 flags a copy at about
90% precision on DISC2021: the ``sscd`` preset's ``threshold``, which ``diffsim dedup`` uses on an sscd store
when no ``--threshold`` is given.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones.identity import local_identity
from ..backbones.peer_weights import download_file, weight_file
from ..backbones.vit import IMAGENET_MEAN, IMAGENET_STD
from ..bounds import positive_int
from ..devices import resolve_device, resolve_dtype
from ..errors import ConfigError, ModelNotFoundError
from ..features import Features
from ..models import shared_model
from ..preprocess import Resize
from ..settings import compare_field, runtime_field
from .base import FeatureMetric, FeatureSettings
from .cosine import VectorCosine

FILES = (
    "sscd_disc_mixup.torchscript.pt",
    "sscd_disc_mixup.torchvision.pt",
    "sscd_imagenet_mixup.torchscript.pt",
    "model.safetensors",
    "sscd_disc_mixup.pth",
)
RELEASE = "https://dl.fbaipublicfiles.com/sscd-copy-detection/{}"  # the SSCD README's download links
DEFAULT_FILE = "sscd_disc_mixup.torchscript.pt"  # the authors' recommended model


def default_path() -> Path:
    """``<torch hub dir>/sscd/sscd_disc_mixup.torchscript.pt``: ``model=None`` downloads it there on first use."""
    return Path(torch.hub.get_dir()) / "sscd" / DEFAULT_FILE


class GeM(nn.Module):
    """Generalised-mean pooling ``mean(clamp(x, eps)^p)^(1/p)`` over the spatial positions."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p, self.eps = p, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # in float32: x^3 overflows float16
        return x.float().clamp(min=self.eps).pow(self.p).mean((2, 3), keepdim=True).pow(1.0 / self.p).to(x.dtype)


def build_resnet50(dims: int = 512, p: float = 3.0) -> nn.Module:
    """torchvision ResNet-50 with GeM pooling and a ``dims``-wide ``fc`` (random weights)."""
    import torchvision

    net = torchvision.models.resnet50(weights=None, num_classes=dims)
    net.avgpool = GeM(p)
    return net


class SSCDNet(nn.Module):
    """The descriptor: backbone then L2 normalisation (the released TorchScript already normalises)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)


def _read(path: Path) -> nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            return torch.jit.load(str(path), map_location="cpu")
    except Exception:
        pass  # not TorchScript: a state dict
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
        net = build_resnet50(state["fc.weight"].shape[0])
        net.load_state_dict(state, strict=True)
        return net
    except Exception as exc:
        raise ModelNotFoundError(
            f"{path} is neither an SSCD TorchScript file nor a ResNet-50 state dict: {type(exc).__name__}: {exc}"
        ) from exc


@dataclasses.dataclass(frozen=True)
class SSCDBackbone:
    net: nn.Module
    identity: str
    device: torch.device
    dtype: torch.dtype


def load_sscd(model: str | os.PathLike, device: Any, dtype: Any, revision: str | None = None) -> SSCDBackbone:
    fix = (
        "download sscd_disc_mixup.torchscript.pt from the SSCD release "
        "(github.com/facebookresearch/sscd-copy-detection) and pass model='/path/to/sscd_disc_mixup.torchscript.pt'"
    )
    path = weight_file(model, FILES, "SSCD", fix, fix.replace("model='", "--model '"), revision)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev) if dtype is not None else torch.float32
    ident = local_identity(path)

    def load() -> SSCDBackbone:
        net = SSCDNet(_read(path)).to(device=dev, dtype=dt).eval().requires_grad_(False)
        return SSCDBackbone(net, ident, dev, dt)

    return shared_model(("sscd", ident, str(dev), str(dt)), load)


@dataclasses.dataclass(frozen=True)
class SSCDSettings(FeatureSettings):
    size: int = 320
    batch_size: int = runtime_field(16)
    threshold: float = compare_field(0.75)  # copy-detection threshold (SSCD: ~90% precision on DISC2021); for dedup

    def validate(self) -> None:
        super().validate()
        positive_int("size", self.size)
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)):
            raise ConfigError(f"threshold must be a number; got {self.threshold!r}")
        if not -1.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be a cosine in [-1, 1]; got {self.threshold!r}")
        self._set("threshold", float(self.threshold))


class SSCD(VectorCosine, FeatureMetric):
    """Cosine of SSCD descriptors; higher is more similar (``settings.threshold`` flags copies)."""

    Settings = SSCDSettings
    settings: SSCDSettings
    default_name = "sscd"

    @classmethod
    def load_backbone(cls, settings: SSCDSettings) -> SSCDBackbone:
        model = settings.model
        if model is None:
            model = default_path()
            if not model.is_file():
                download_file(RELEASE.format(DEFAULT_FILE), model, "SSCD")
        return load_sscd(model, settings.device, settings.dtype, settings.revision)

    def setup(self) -> None:
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @property
    def preprocessor(self) -> Resize:
        return Resize(self.settings.size)

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> Features:
        x = ((pixels.to(self.device) - self.mean) / self.std).to(self.dtype)
        return Features({"descriptor": self.backbone.net(x).float()})

    def vector(self, feats: Features) -> torch.Tensor:
        return feats.tensors["descriptor"]

    def is_copy(self, a: Features, b: Features) -> torch.Tensor:
        """True where the cosine reaches ``settings.threshold``."""
        return self.compare(a, b) >= self.settings.threshold
