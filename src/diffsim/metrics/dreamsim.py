"""DreamSim (Fu et al., NeurIPS 2023): a human-aligned perceptual *distance* (lower is more similar).

Re-implemented on :class:`~diffsim.backbones.plain_vit.PlainViT`, reading the released checkpoint folder (the
unzipped ``dreamsim_<variant>_checkpoint.zip``, the ``cache_dir`` of the ``dreamsim`` package):

* ``ensemble``: DINO ViT-B/16 (CLS token after the last block, before the final norm), OpenAI CLIP
  ViT-B/16 and OpenCLIP ViT-B/16 (projected image embeddings), concatenated;
* single-backbone variants ``dino_vitb16``, ``clip_vitb32``, ``open_clip_vitb32``.

The DINO tower is read from ``checkpoints/dino_vitbase16_pretrain.pth`` (what ``torch.hub`` fetched for the
package) or else from the teacher backbone of the zip's ``dino_vitb16_pretrain.pth`` (DINO's full checkpoint;
DINO's backbone-only release is its teacher). Each tower gets its LoRA adapter
(``<tag>_lora/adapter_config.json`` + ``adapter_model.*``) merged into its weights (``W += alpha / r * B A``).
The embedding is centred and unit-normalised; the distance is ``1 - cosine``. Images are resized to 224 x 224
(bicubic, as the package) and normalised per tower (ImageNet for DINO, CLIP statistics for CLIP
/ OpenCLIP).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any, cast

import torch

from ..backbones.identity import model_identity
from ..backbones.peer_weights import weight_folder
from ..backbones.plain_vit import PlainViT, from_dino_state
from ..backbones.vit import IMAGENET_MEAN, IMAGENET_STD
from ..bounds import one_of, positive_int
from ..devices import resolve_device, resolve_dtype
from ..errors import ModelNotFoundError
from ..features import Features
from ..models import shared_model
from ..preprocess import Resize
from ..settings import load_field, runtime_field
from ..similarity import unit_dot_matrix, unit_dot_rows
from .base import FeatureMetric, FeatureSettings

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RELEASE = "https://github.com/ssundaram21/dreamsim/releases/download/v0.2.0-checkpoints/dreamsim_{}_checkpoint.zip"

#: tower -> (checkpoint files tried in order, feature, QuickGELU, LayerNorm eps)
TOWERS: dict[str, tuple[tuple[str, ...], str, bool, float]] = {
    "dino_vitb16": (("checkpoints/dino_vitbase16_pretrain.pth", "dino_vitb16_pretrain.pth"), "cls", False, 1e-6),
    "clip_vitb16": (("clip_vitb16_pretrain.pth.tar",), "embedding", True, 1e-5),
    "clip_vitb32": (("clip_vitb32_pretrain.pth.tar",), "embedding", True, 1e-5),
    "open_clip_vitb16": (("open_clip_vitb16_pretrain.pth.tar",), "embedding", False, 1e-5),
    "open_clip_vitb32": (("open_clip_vitb32_pretrain.pth.tar",), "embedding", False, 1e-5),
}
#: variant -> (towers, LoRA folder)
VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "ensemble": (("dino_vitb16", "clip_vitb16", "open_clip_vitb16"), "ensemble_lora"),
    "dino_vitb16": (("dino_vitb16",), "dino_vitb16_single_lora"),
    "clip_vitb32": (("clip_vitb32",), "clip_vitb32_single_lora"),
    "open_clip_vitb32": (("open_clip_vitb32",), "open_clip_vitb32_single_lora"),
}


def default_folder() -> Path:
    """Where DreamSim checkpoints live when ``model`` is None: ``<torch hub dir>/dreamsim`` (downloaded there on
    first use from the authors' GitHub release, like the package)."""
    return Path(torch.hub.get_dir()) / "dreamsim"


@dataclasses.dataclass(frozen=True)
class Tower:
    """One backbone of DreamSim with its feature, normalisation and projection."""

    name: str
    vit: PlainViT
    feature: str  # "cls" (last block, before the norm) or "embedding" (normed CLS @ proj)
    proj: torch.Tensor | None
    mean: torch.Tensor
    std: torch.Tensor

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden, normed = self.vit(((pixels - self.mean) / self.std).to(self.mean.dtype))
        if self.feature == "cls":
            return hidden[-1][:, 0]
        assert self.proj is not None
        return normed[:, 0] @ self.proj


@dataclasses.dataclass(frozen=True)
class DreamSimBackbone:
    towers: tuple[Tower, ...]
    identity: str
    device: torch.device
    dtype: torch.dtype


def _read_state(path: Path, tower: str) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The DINO-layout state dict and the projection (CLIP towers) of one tower file."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # DINO's full checkpoint may hold its args
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelNotFoundError(f"could not read DreamSim {tower} weights from {path}: {exc}") from exc
    if "state_dict" in obj:  # CLIP / OpenCLIP towers: {"state_dict": {..., "proj": (D, E)}}
        state = dict(obj["state_dict"])
        return state, state.pop("proj")
    if "teacher" in obj:  # DINO's full training checkpoint: the teacher backbone (what DINO releases)
        state = {k[len("backbone.") :]: v for k, v in obj["teacher"].items() if k.startswith("backbone.")}
        return state, None
    return dict(obj), None


def _lora(folder: Path) -> tuple[dict[str, torch.Tensor], float]:
    """The adapter's tensors and its scale (``alpha / r``; ``alpha / sqrt(r)`` with rsLoRA)."""
    cfg = json.loads((folder / "adapter_config.json").read_text())
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scale = alpha / (r**0.5) if cfg.get("use_rslora") else alpha / r
    if (folder / "adapter_model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(folder / "adapter_model.safetensors"), scale
    if (folder / "adapter_model.bin").is_file():
        return torch.load(folder / "adapter_model.bin", map_location="cpu", weights_only=True), scale
    raise ModelNotFoundError(f"no adapter_model.safetensors or adapter_model.bin in DreamSim LoRA folder {folder}")


def merge_lora(vits: list[PlainViT], adapter: dict[str, torch.Tensor], scale: float) -> int:
    """Add ``scale * B @ A`` to every adapted linear layer of the towers; the number merged."""
    merged = 0
    for key, a in adapter.items():
        m = re.fullmatch(r"(?:base_model\.model\.)?extractor_list\.(\d+)\.model\.(.+)\.lora_A(\.default)?\.weight", key)
        if m is None:
            continue
        index, rest = int(m.group(1)), m.group(2)
        b = adapter[key.replace(".lora_A.", ".lora_B.")]
        layer = cast(torch.nn.Linear, vits[index].get_submodule(rest.replace("pos_drop", "ln_pre")))
        with torch.no_grad():
            layer.weight += scale * (b.float() @ a.float()).to(layer.weight.dtype)
        merged += 1
    return merged


def download_release(variant: str, folder: Path) -> None:
    """Fetch and unzip the authors' release zip of ``variant`` into ``folder`` (as the package does)."""
    url = RELEASE.format(variant)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"dreamsim_{variant}_checkpoint.zip"
    logger.info("downloading DreamSim %s weights from %s into %s", variant, url, folder)
    try:
        torch.hub.download_url_to_file(url, str(target), progress=False)
        with zipfile.ZipFile(target) as z:
            z.extractall(folder)  # zipfile drops absolute and ".." path parts
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelNotFoundError(
            f"DreamSim {variant} weights are not in {folder} and downloading {url} failed ({type(exc).__name__}: "
            f"{first})",
            hint=f"download {url} while online and unzip it into {folder}, or pass model='/path/to/folder'",
            cli_hint=f"download {url} while online and unzip it into {folder}, or pass --model /path/to/folder",
        ) from exc
    finally:
        target.unlink(missing_ok=True)


def load_dreamsim(
    variant: str, model: str | os.PathLike | None, device: Any, dtype: Any, revision: str | None = None
) -> DreamSimBackbone:
    """Build a DreamSim variant from its released checkpoint folder (shared once loaded)."""
    names, tag = VARIANTS[variant]
    source = model if model is not None else default_folder()
    fix = (
        f"download {RELEASE.format(variant)} and unzip it into {default_folder()} (or pass model='/path/to/folder', "
        "the dreamsim package's cache_dir)"
    )
    cli_fix = fix.replace("model='/path/to/folder'", "--model /path/to/folder")
    required = [tag] + [TOWERS[n][0][0] for n in names if not n.startswith("dino")]
    dino = list(TOWERS["dino_vitb16"][0])
    if model is None and not all((default_folder() / r).exists() for r in required):
        download_release(variant, default_folder())  # the default folder: fetched like the package does
    folder = weight_folder(source, required, f"DreamSim {variant}", fix, cli_fix, revision, patterns=dino)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev) if dtype is not None else torch.float32
    ident = model_identity(folder, revision) + f":{variant}"

    def load() -> DreamSimBackbone:
        vits, feats, projs = [], [], []
        for name in names:
            files, feature, quick, eps = TOWERS[name]
            path = next((folder / f for f in files if (folder / f).is_file()), None)
            if path is None:
                raise ModelNotFoundError(
                    f"DreamSim folder {folder} lacks the {name} weights: looked for {', '.join(files)}",
                    hint=fix,
                    cli_hint=cli_fix,
                )
            state, proj = _read_state(path, name)
            try:
                vits.append(from_dino_state(state, quick, eps))
            except (KeyError, RuntimeError) as exc:
                raise ModelNotFoundError(f"{path} is not a DreamSim {name} checkpoint: {exc}") from exc
            feats.append(feature)
            projs.append(proj)
        adapter, scale = _lora(folder / tag)
        if merge_lora(vits, adapter, scale) == 0:
            raise ModelNotFoundError(f"the DreamSim LoRA folder {folder / tag} adapts no layer of the towers")
        towers = []
        for name, vit, feature, proj in zip(names, vits, feats, projs, strict=True):
            mean, std = (IMAGENET_MEAN, IMAGENET_STD) if name.startswith("dino") else (CLIP_MEAN, CLIP_STD)
            towers.append(
                Tower(
                    name,
                    vit.to(device=dev, dtype=dt).eval().requires_grad_(False),
                    feature,
                    None if proj is None else proj.to(device=dev, dtype=dt),
                    torch.tensor(mean, device=dev, dtype=dt).view(1, 3, 1, 1),
                    torch.tensor(std, device=dev, dtype=dt).view(1, 3, 1, 1),
                )
            )
        return DreamSimBackbone(tuple(towers), ident, dev, dt)

    return shared_model(("dreamsim", variant, ident, str(dev), str(dt)), load)


@dataclasses.dataclass(frozen=True)
class DreamSimSettings(FeatureSettings):
    """``model``: the checkpoint folder (or a hub repo with that layout); None: ``<torch hub dir>/dreamsim``."""

    variant: str = load_field("ensemble")
    size: int = 224
    batch_size: int = runtime_field(16)

    def validate(self) -> None:
        super().validate()
        one_of("variant", self.variant, tuple(VARIANTS))
        positive_int("size", self.size)

    @property
    def higher_is_better(self) -> bool:
        return False


class DreamSim(FeatureMetric):
    """DreamSim distance ``1 - cos`` of centred, normalised embeddings; lower is more similar."""

    Settings = DreamSimSettings
    settings: DreamSimSettings
    default_name = "dreamsim"

    @classmethod
    def load_backbone(cls, settings: DreamSimSettings) -> DreamSimBackbone:
        return load_dreamsim(settings.variant, settings.model, settings.device, settings.dtype, settings.revision)

    @property
    def preprocessor(self) -> Resize:
        return Resize(self.settings.size, resample="bicubic")  # the package's Resize((224, 224), BICUBIC)

    def resolved(self) -> dict[str, Any]:
        return {"towers": [t.name for t in self.backbone.towers]}

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> Features:
        x = pixels.to(self.device)
        e = torch.cat([t(x).float() for t in self.backbone.towers], dim=1)
        e = e - e.mean(dim=1, keepdim=True)
        return Features({"embedding": torch.nn.functional.normalize(e, dim=1)})

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        self.check_pair(a, b)
        return 1 - unit_dot_rows(a.tensors["embedding"], b.tensors["embedding"])  # in [0, 2], 0 for itself

    def compare_matrix(self, a: Features, b: Features) -> torch.Tensor:
        self.check_pair(a, b)
        return 1 - unit_dot_matrix(a.tensors["embedding"], b.tensors["embedding"])

    def pool(self, feats: Features) -> torch.Tensor:
        return feats.tensors["embedding"].float()
