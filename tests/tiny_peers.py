"""Tiny random-weight checkpoints of the peers' real architectures, written in their released layouts.

* DreamSim: a checkpoint folder (``<tower>_pretrain.pth.tar`` = ``{"state_dict": DINO-layout keys + "proj"}``
  for CLIP / OpenCLIP towers, DINO's full checkpoint ``dino_vitb16_pretrain.pth`` with a ``teacher``
  backbone, and ``<tag>_lora/adapter_config.json`` + ``adapter_model.safetensors`` with PEFT's key names);
* CSD: ``checkpoint.pth`` = ``{"model_state_dict": {"module.backbone.<OpenAI CLIP visual keys>",
  "module.last_layer_style", "module.last_layer_content"}, "args": Namespace}``;
* SSCD: a torchvision ResNet-50 + GeM + 512-d fc, as SSCD's ``.torchvision.pt`` state dict and as TorchScript;
* DISTS: ``weights.pt`` with ``alpha`` / ``beta`` (1, 1475, 1, 1), as the authors ship it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from diffsim.backbones.plain_vit import PlainViT
from diffsim.metrics.dreamsim import TOWERS, VARIANTS
from diffsim.metrics.sscd import SSCDNet, build_resnet50

PEER_SIZE = 32  # tiny towers: patch 16 -> 2 x 2 patches + CLS (patch 32 for the B/32 towers: 1 patch)
DIM, DEPTH, PROJ = 64, 2, 32


def randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter ~ N(0, 0.1) (LayerNorm weights around 1), so that no output is trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.1
            p.copy_(1 + noise if ("norm" in name or "ln_" in name) and name.endswith("weight") else noise)
    return module


def tiny_vit(patch: int, ln_pre: bool, quick: bool, seed: int, depth: int = DEPTH) -> PlainViT:
    tokens = (PEER_SIZE // patch) ** 2 + 1
    return randomise(PlainViT(DIM, depth, patch, tokens, 4 * DIM, ln_pre, quick, 1e-5), seed)  # type: ignore[return-value]


def dino_layout(vit: PlainViT) -> dict[str, torch.Tensor]:
    """DreamSim's key names: CLIP's ``ln_pre`` is stored as ``pos_drop``."""
    return {k.replace("ln_pre.", "pos_drop."): v.clone() for k, v in vit.state_dict().items()}


def write_lora(folder: Path, vits: list[PlainViT], seed: int, r: int = 4, alpha: float = 8.0) -> None:
    """A PEFT adapter on every ``attn.qkv`` of the towers (PEFT's saved key names)."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for i, vit in enumerate(vits):
        for j, blk in enumerate(vit.blocks):
            d_out, d_in = blk.attn.qkv.weight.shape
            key = f"base_model.model.extractor_list.{i}.model.blocks.{j}.attn.qkv"
            tensors[f"{key}.lora_A.weight"] = torch.randn(r, d_in, generator=g) * 0.1
            tensors[f"{key}.lora_B.weight"] = torch.randn(d_out, r, generator=g) * 0.1
    save_file(tensors, folder / "adapter_model.safetensors")
    cfg = {
        "peft_type": "LORA",
        "task_type": None,
        "inference_mode": True,
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": ["qkv"],
    }
    (folder / "adapter_config.json").write_text(json.dumps(cfg))


def dino_head(seed: int) -> dict[str, torch.Tensor]:
    """A (small) DINO projection head under DINO's student keys (the package reads it; DreamSim never uses it)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"mlp.0": (16, DIM), "mlp.2": (16, 16), "mlp.4": (8, 16)}
    out = {}
    for name, shape in shapes.items():
        out[f"module.head.{name}.weight"] = torch.randn(shape, generator=g)
        out[f"module.head.{name}.bias"] = torch.randn(shape[0], generator=g)
    out["module.head.last_layer.weight"] = torch.randn(8, 8, generator=g)
    return out


def make_dreamsim_folder(root: Path, variant: str = "ensemble", seed: int = 0, depth: int = DEPTH) -> Path:
    """A DreamSim checkpoint folder for ``variant`` with tiny random towers of ``depth`` blocks."""
    root.mkdir(parents=True, exist_ok=True)
    names, tag = VARIANTS[variant]
    vits = []
    for k, name in enumerate(names):
        files, _, quick, _ = TOWERS[name]
        patch = 32 if name.endswith("b32") else 16
        if name.startswith("dino"):
            vit = tiny_vit(patch, ln_pre=False, quick=False, seed=seed + k, depth=depth)
            teacher = {f"backbone.{name}": v for name, v in vit.state_dict().items()}
            full = {"teacher": teacher, "student": dino_head(seed + 200)}  # the package reads it weights_only
            torch.save(full, root / files[-1])  # DINO's full training checkpoint
        else:
            vit = tiny_vit(patch, ln_pre=True, quick=quick, seed=seed + k, depth=depth)
            proj = torch.randn(DIM, PROJ, generator=torch.Generator().manual_seed(seed + 50 + k)) * 0.1
            torch.save({"state_dict": {**dino_layout(vit), "proj": proj}}, root / files[0])
        vits.append(vit)
    write_lora(root / tag, vits, seed + 100)
    return root


def clip_visual_state(vit: PlainViT) -> dict[str, torch.Tensor]:
    """The OpenAI CLIP ``visual`` keys of a tower (conv1 without bias, as CLIP)."""
    inv = {
        "norm1": "ln_1",
        "norm2": "ln_2",
        "attn.qkv.weight": "attn.in_proj_weight",
        "attn.qkv.bias": "attn.in_proj_bias",
        "attn.proj": "attn.out_proj",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
    }
    out = {}
    for k, v in vit.state_dict().items():
        if k == "patch_embed.proj.weight":
            out["conv1.weight"] = v
        elif k == "cls_token":
            out["class_embedding"] = v.reshape(-1)
        elif k == "pos_embed":
            out["positional_embedding"] = v[0]
        elif k.startswith("norm."):
            out["ln_post." + k[5:]] = v
        elif k.startswith("blocks."):
            _, i, name = k.split(".", 2)
            for new, old in inv.items():
                if name.startswith(new):
                    name = old + name[len(new) :]
                    break
            out[f"transformer.resblocks.{i}.{name}"] = v
        else:
            out[k] = v
    return out


def make_csd_checkpoint(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    vit = PlainViT(DIM, DEPTH, 8, (PEER_SIZE // 8) ** 2 + 1, 4 * DIM, True, True, 1e-5, patch_bias=False)
    randomise(vit, seed)
    g = torch.Generator().manual_seed(seed + 1)
    state = {f"module.backbone.{k}": v for k, v in clip_visual_state(vit).items()}
    state["module.last_layer_style"] = torch.randn(DIM, PROJ, generator=g)
    state["module.last_layer_content"] = torch.randn(DIM, PROJ, generator=g)
    torch.save({"model_state_dict": state, "args": argparse.Namespace(arch="vit_large"), "epoch": 1}, path)
    return path


def make_sscd(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """(state dict .pth, TorchScript .pt) of one random SSCD ResNet-50."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = build_resnet50(512).eval()
    with torch.no_grad():  # random BN statistics, so that features differ between images
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    sd = folder / "sscd_disc_mixup.torchvision.pt"  # SSCD's torchvision weight file: keys under backbone.
    torch.save({f"backbone.{k}": v for k, v in net.state_dict().items()}, sd)
    ts = folder / "sscd_disc_mixup.torchscript.pt"
    torch.jit.script(SSCDNet(net)).save(str(ts))
    return sd, ts


def make_dists_weights(path: Path, seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    alpha = 0.1 + 0.01 * torch.randn(1, 1475, 1, 1, generator=g)
    beta = 0.1 + 0.01 * torch.randn(1, 1475, 1, 1, generator=g)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"alpha": alpha, "beta": beta}, path)
    return path


def make_peers(root: Path) -> dict[str, str]:
    """Every peer's tiny checkpoint under ``root``: {key: path}."""
    out = {f"dreamsim:{v}": str(make_dreamsim_folder(root / f"dreamsim-{v}", v)) for v in VARIANTS}
    out["csd"] = str(make_csd_checkpoint(root / "csd" / "checkpoint.pth"))
    out["sscd"] = str(make_sscd(root / "sscd")[1])
    out["dists"] = str(make_dists_weights(root / "dists" / "weights.pt"))
    return out
