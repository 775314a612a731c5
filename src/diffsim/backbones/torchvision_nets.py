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
from typing import Any, cast

import torch
import torch.nn as nn

from ..devices import resolve_device, resolve_dtype
from ..errors import ConfigError, ModelNotFoundError
from ..models import shared_model
from .identity import local_identity
from .loading import quiet_loading

logger = logging.getLogger(__name__)

ARCHS = ("vgg16", "vgg19", "alexnet")
#: LPIPS' scaling layer on inputs in [-1, 1]: ``(x - SHIFT) / SCALE`` per channel
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


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

            get = f"download {enum.url} while online into that folder (TORCH_HOME sets it), or pass "
            raise ModelNotFoundError(
                f"could not get torchvision's {arch} {enum} weights ({type(exc).__name__}: {exc}); looked in "
                f"{get_dir()}/checkpoints",
                hint=get + f"weights='/path/to/{arch}.pth' (a torchvision state dict)",
                cli_hint=get + f"--set weights=/path/to/{arch}.pth (a torchvision state dict)",
            ) from exc
    p = Path(weights).expanduser()
    if not p.is_file():
        raise ModelNotFoundError(
            f"{arch} weights file {p} does not exist",
            hint="pass a torchvision state dict (.pth), weights='imagenet' to download, or "
            "weights=None for random weights",
            cli_hint="pass --set weights=/path/to/state_dict.pth, or --set weights=imagenet to download",
        )
    model = ctor(weights=None)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:
        raise ModelNotFoundError(f"could not load {arch} weights from {p}: {exc}") from exc
    return model


def weights_identity(arch: str, weights: str | os.PathLike | None) -> str:
    """What identifies ``arch`` with ``weights``: torchvision's fixed checkpoint, a local file's path and
    digest, or a fresh token for random weights (never shared with another load)."""
    if weights is None:
        import uuid

        return f"torchvision:{arch}:random:{uuid.uuid4().hex}"
    if str(weights) == "imagenet":
        import torchvision

        return f"torchvision:{arch}:{torchvision.models.get_model_weights(arch).IMAGENET1K_V1.url.rsplit('/', 1)[-1]}"
    p = Path(weights).expanduser()
    return f"torchvision:{arch}:" + (local_identity(p) if p.exists() else str(weights))


def load_features(
    arch: str,
    weights: str | os.PathLike | None = "imagenet",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    share: bool = True,
) -> nn.Sequential:
    """The convolutional ``features`` stack of ``arch`` in eval mode, without gradients."""
    if arch not in ARCHS:
        raise ConfigError(f"arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev) if dtype is not None else torch.float32
    ident = weights_identity(arch, weights)
    key = ("torchvision", arch, ident, str(dev), str(dt))

    def load() -> nn.Sequential:
        with quiet_loading():  # torch.hub's download messages stay off stdout
            net = _build(arch, weights)
        feats = cast(nn.Sequential, net.features).to(device=dev, dtype=dt).eval().requires_grad_(False)
        for m in feats.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
        # the feature cache key of these weights (torch types Module.__setattr__ values as Tensor | Module only)
        feats.identity = ident  # type: ignore[assignment]
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

    @property
    def identity(self) -> str:
        """The weights loaded (torchvision's checkpoint file, a local file's path + digest, or a random token)."""
        return getattr(self.features, "identity", self.source)

    @classmethod
    def from_pretrained(
        cls,
        arch: str,
        weights: str | os.PathLike | None = "imagenet",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> TorchvisionBackbone:
        feats = load_features(arch, weights, device, dtype)
        p = next(feats.parameters())
        return cls(feats, f"{arch}:{weights}", p.device, p.dtype)
