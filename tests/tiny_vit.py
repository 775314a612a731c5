"""Tiny random-weight CLIP and DINOv2 checkpoints built with the real transformers classes."""

from __future__ import annotations

from pathlib import Path

import torch

VIT_SIZE = 32  # input size for the tiny ViTs (patch 8 -> 4 x 4 patches + CLS = 17 tokens)


def build_tiny_clip(folder: Path) -> Path:
    """A full CLIPModel (text + vision + projections) saved with save_pretrained, like the hub checkpoint."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=100,
            max_position_embeddings=16,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=VIT_SIZE,
            patch_size=8,
        ),
        projection_dim=16,
    )
    CLIPModel(cfg).eval().save_pretrained(folder)
    return folder


def build_tiny_dinov2(folder: Path) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=VIT_SIZE,
        patch_size=8,
        mlp_ratio=2,
    )
    Dinov2Model(cfg).eval().save_pretrained(folder)
    return folder


def build_tiny_dinov3(folder: Path) -> Path:
    """A tiny DINOv3ViTModel (2 register tokens, RoPE, layer scale), Q/K weights scaled x3 so that scores
    spread out (at default init every pair scores ~0.999)."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(0)
    cfg = DINOv3ViTConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=VIT_SIZE,
        patch_size=8,
        num_register_tokens=2,
        layerscale_value=1.0,
    )
    model = DINOv3ViTModel(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layer:
            layer.attention.q_proj.weight.mul_(3.0)
            layer.attention.k_proj.weight.mul_(3.0)
    model.save_pretrained(folder)
    return folder
