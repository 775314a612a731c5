"""torchvision VGG16 / VGG19 / AlexNet feature stacks for LPIPS and Gram, shared once loaded.

``weights="imagenet"`` loads torchvision's IMAGENET1K_V1 checkpoint (downloaded into the torch hub
cache, ``TORCH_HOME``); a path loads a local state dict (a torchvision ``.pth`` for the whole model);
``None`` keeps random weights (for tests only: the scores are then meaningless).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..devices import resolve_device, resolve_dtype
from ..errors import ConfigError, ModelNotFoundError
from ..models import shared_model

logger = logging.getLogger(__name__)

ARCHS = ("vgg16", "vgg19", "alexnet")


def _build(arch: str, weights: str | os.PathLike | None) -> nn.Module:
    import torchvision

    ctor = getattr(torchvision.models, arch)
    if weights is None:
        logger.warning("%s has random weights (weights=None): scores are meaningless outside tests", arch)
        return ctor(weights=None)
    if str(weights) == "imagenet":
        enum = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
        try:
            return ctor(weights=enum)
        except Exception as exc:
            from torch.hub import get_dir

            raise ModelNotFoundError(
                f"could not get torchvision's {arch} {enum} weights ({type(exc).__name__}: {exc}); looked in "
                f"{get_dir()}/checkpoints. To fix: download {enum.url} while online into that folder (TORCH_HOME "
                f"sets it), or pass weights=/path/to/{arch}.pth (a torchvision state dict)") from exc
    p = Path(weights).expanduser()
    if not p.is_file():
        raise ModelNotFoundError(f"{arch} weights file {p} does not exist: pass a torchvision state dict "
                                 f"(.pth), weights='imagenet' to download, or weights=None for random weights")
    model = ctor(weights=None)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        raise ModelNotFoundError(f"could not load {arch} weights from {p}: {exc}") from exc
    return model


def load_features(arch: str, weights: str | os.PathLike | None = "imagenet",
                  device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                  share: bool = True) -> nn.Sequential:
    """The convolutional ``features`` stack of ``arch`` in eval mode, without gradients."""
    if arch not in ARCHS:
        raise ConfigError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev) if dtype is not None else torch.float32
    key = ("torchvision", arch, str(weights), str(dev), str(dt))

    def load() -> nn.Sequential:
        feats = _build(arch, weights).features.to(device=dev, dtype=dt).eval().requires_grad_(False)
        for m in feats.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
        return feats

    return shared_model(key, load, share and weights is not None)  # random weights are never shared


@dataclass(frozen=True)
class TorchvisionBackbone:
    """A torchvision ``features`` stack with where it came from (and metric-specific extras)."""

    features: nn.Sequential
    source: str
    device: torch.device
    dtype: torch.dtype
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_pretrained(cls, arch: str, weights: str | os.PathLike | None = "imagenet",
                        device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> "TorchvisionBackbone":
        feats = load_features(arch, weights, device, dtype)
        p = next(feats.parameters())
        return cls(feats, f"{arch}:{weights}", p.device, p.dtype)
