"""CSD (Somepalli et al., 2024): the Contrastive Style Descriptor; cosine of style (or content) embeddings.

Architecture of the CSD release: the OpenAI CLIP ViT-L/14 image tower (fine-tuned) without its
projection, then two projection heads ``last_layer_style`` and ``last_layer_content`` (1024 x 768); each
embedding is L2-normalised. ``head="style"`` (default) compares style embeddings, ``head="content"``
content ones; both are cached per image. Images: torchvision ``Resize(224)`` (bicubic, the long side
truncated), ``CenterCrop(224)``, CLIP mean/std, as the authors' transform.

``model`` is a hub repo id (default ``tomg-group-umd/CSD-ViT-L``, the authors' ``model.safetensors`` with
keys ``backbone.conv1.weight`` ..., ``last_layer_style``, ``last_layer_content``), CSD's training
``checkpoint.pth`` (the same keys under ``model_state_dict`` with a ``module.`` prefix), or a folder holding
either. The CSD authors note that only the style output is meant to be used (their issue #10: the content
head is a leftover); checkpoints with their ``custom`` content head have no ``head="content"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from ..backbones.identity import local_identity
from ..backbones.peer_weights import weight_file
from ..backbones.plain_vit import PlainViT, clip_to_dino, from_dino_state
from ..bounds import one_of, positive_int
from ..devices import resolve_device, resolve_dtype
from ..errors import ConfigError, ModelNotFoundError
from ..features import Features
from ..models import shared_model
from ..preprocess import ResizeCrop
from ..settings import compare_field, runtime_field
from .base import FeatureMetric, FeatureSettings
from .cosine import VectorCosine
from .dreamsim import CLIP_MEAN, CLIP_STD

FILES = ("model.safetensors", "checkpoint.pth", "csd_checkpoint.pth", "pytorch_model.bin")
DEFAULT_MODEL = "tomg-group-umd/CSD-ViT-L"  # the authors' hub release (PyTorchModelHubMixin: model.safetensors)
HEADS = ("style", "content")


@dataclasses.dataclass(frozen=True)
class CSDBackbone:
    vit: PlainViT
    style: torch.Tensor
    content: torch.Tensor | None  # None: the checkpoint has CSD's custom (MLP) content head, not supported
    identity: str
    device: torch.device
    dtype: torch.dtype


def read_csd(path: Path) -> tuple[PlainViT, torch.Tensor, torch.Tensor | None]:
    """The tower and both heads from a CSD checkpoint."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(path)
        else:
            with torch.serialization.safe_globals([argparse.Namespace]):  # CSD saves its training args
                obj = torch.load(path, map_location="cpu", weights_only=True)
        state = obj.get("model_state_dict", obj.get("state_dict", obj))
        state = {k.removeprefix("module."): v for k, v in state.items()}
        style, content = state.pop("last_layer_style"), state.pop("last_layer_content", None)
        state = {k: v for k, v in state.items() if not k.startswith("last_layer_content.")}  # a custom head
        tower = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
        vit = from_dino_state(clip_to_dino(tower), quick_gelu=True, eps=1e-5)
    except Exception as exc:
        raise ModelNotFoundError(f"{path} is not a CSD checkpoint: {type(exc).__name__}: {exc}") from exc
    return vit, style, content


def load_csd(model: str | os.PathLike, device: Any, dtype: Any, revision: str | None = None) -> CSDBackbone:
    fix = (
        f"download it once while online (`hf download {DEFAULT_MODEL}`), or pass model='/path/to/model.safetensors' "
        "(or CSD's checkpoint.pth)"
    )
    path = weight_file(model, FILES, "CSD", fix, fix.replace("model='", "--model '"), revision)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev) if dtype is not None else torch.float32
    ident = local_identity(path)

    def load() -> CSDBackbone:
        vit, style, content = read_csd(path)
        vit = vit.to(device=dev, dtype=dt).eval().requires_grad_(False)
        return CSDBackbone(vit, style.to(dev, dt), None if content is None else content.to(dev, dt), ident, dev, dt)

    return shared_model(("csd", ident, str(dev), str(dt)), load)


@dataclasses.dataclass(frozen=True)
class CSDSettings(FeatureSettings):
    head: str = compare_field("style")  # or "content"
    size: int = 224
    batch_size: int = runtime_field(16)

    def validate(self) -> None:
        super().validate()
        one_of("head", self.head, HEADS)
        positive_int("size", self.size)


class CSD(VectorCosine, FeatureMetric):
    """Cosine of CSD style (or content) embeddings; higher is more similar."""

    Settings = CSDSettings
    settings: CSDSettings
    default_name = "csd"
    default_model = DEFAULT_MODEL

    @classmethod
    def load_backbone(cls, settings: CSDSettings) -> CSDBackbone:
        return load_csd(settings.model or cls.default_model, settings.device, settings.dtype, settings.revision)

    def setup(self) -> None:
        if self.settings.head == "content" and self.backbone.content is None:
            raise ConfigError("this CSD checkpoint has no linear content head (head='content'); use head='style'")
        self.mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)

    @property
    def preprocessor(self) -> ResizeCrop:
        return ResizeCrop(self.settings.size, self.settings.size, torchvision=True)  # CSD's Resize + CenterCrop

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> Features:
        x = ((pixels.to(self.device) - self.mean) / self.std).to(self.dtype)
        _, normed = self.backbone.vit(x)
        cls = normed[:, 0]
        out = {"style": torch.nn.functional.normalize((cls @ self.backbone.style).float(), dim=1)}
        if self.backbone.content is not None:
            out["content"] = torch.nn.functional.normalize((cls @ self.backbone.content).float(), dim=1)
        return Features(out)

    def vector(self, f: Features) -> torch.Tensor:
        return f.tensors[self.settings.head]

    def pool(self, feats: Features) -> torch.Tensor:
        return self.vector(feats).float()
