"""Build a tiny random IP-Adapter Plus for the tiny SD 1.5 pipeline, in the ``h94/IP-Adapter`` layout.

``models/ip-adapter-plus_sd15.safetensors`` holds the original (non-diffusers) key names, as h94 ships
them: ``image_proj.*`` (the Plus resampler: latents, proj_in, 4 x [PerceiverAttention, FeedForward],
proj_out, norm_out) and ``ip_adapter.{1,3,5,...}.to_k_ip/to_v_ip`` for every cross-attention of the U-Net,
in processor order. ``models/image_encoder/`` is a tiny ``CLIPVisionModelWithProjection``. Diffusers'
``load_ip_adapter`` converts and loads both, exactly as for the real checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .tiny_builders import TinyBackbone, register_tiny

NUM_TOKENS = 16  # IP-Adapter Plus: 16 image tokens
RESAMPLER_DIM = 64  # diffusers infers heads = dim // 64
DEPTH = 4


def ip_adapter_plus_state_dict(
    unet, image_embed_dim: int, resampler_dim: int = RESAMPLER_DIM, seed: int = 0, k_gain: float = 1.0
) -> dict[str, torch.Tensor]:
    """Random IP-Adapter Plus weights with h94's original key names for ``unet`` (real size: dim 768, embed 1280)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, std: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    cross = int(unet.config.cross_attention_dim)
    embed, dim, ff = image_embed_dim, resampler_dim, resampler_dim * 4
    sd: dict[str, torch.Tensor] = {
        "image_proj.latents": rnd(1, NUM_TOKENS, dim, std=dim**-0.5),
        "image_proj.proj_in.weight": rnd(dim, embed, std=embed**-0.5),
        "image_proj.proj_in.bias": rnd(dim),
        "image_proj.proj_out.weight": rnd(cross, dim, std=dim**-0.5),
        "image_proj.proj_out.bias": rnd(cross),
        "image_proj.norm_out.weight": 1 + rnd(cross),
        "image_proj.norm_out.bias": rnd(cross),
    }
    for i in range(DEPTH):
        p = f"image_proj.layers.{i}"
        sd.update(
            {
                f"{p}.0.norm1.weight": 1 + rnd(dim),
                f"{p}.0.norm1.bias": rnd(dim),
                f"{p}.0.norm2.weight": 1 + rnd(dim),
                f"{p}.0.norm2.bias": rnd(dim),
                f"{p}.0.to_q.weight": rnd(dim, dim, std=3 * dim**-0.5),
                f"{p}.0.to_kv.weight": rnd(2 * dim, dim, std=3 * dim**-0.5),
                f"{p}.0.to_out.weight": rnd(dim, dim, std=dim**-0.5),
                f"{p}.1.0.weight": 1 + rnd(dim),
                f"{p}.1.0.bias": rnd(dim),
                f"{p}.1.1.weight": rnd(ff, dim, std=dim**-0.5),
                f"{p}.1.3.weight": rnd(dim, ff, std=ff**-0.5),
            }
        )
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            hidden = unet.get_submodule(name[: -len(".processor")]).to_q.out_features
            sd[f"ip_adapter.{key_id}.to_k_ip.weight"] = rnd(hidden, cross, std=k_gain * cross**-0.5)
            sd[f"ip_adapter.{key_id}.to_v_ip.weight"] = rnd(hidden, cross, std=cross**-0.5)
            key_id += 2
    return {k: v.contiguous() for k, v in sd.items()}


def build_tiny_ip_adapter(path: str | Path, sd_path: str | Path, seed: int = 0, k_gain: float = 3.0) -> Path:
    """Write an IP-Adapter Plus folder fitting the U-Net of the tiny SD pipeline at ``sd_path``."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    path = Path(path)
    torch.manual_seed(seed)
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            projection_dim=16,
        )
    )
    encoder.save_pretrained(path / "models" / "image_encoder")
    unet = UNet2DConditionModel.from_pretrained(sd_path, subfolder="unet")
    sd = ip_adapter_plus_state_dict(unet, encoder.config.hidden_size, seed=seed, k_gain=k_gain)
    save_file(sd, str(path / "models" / "ip-adapter-plus_sd15.safetensors"))
    return path


register_tiny(
    TinyBackbone(
        "sd+ip-adapter",
        lambda folder, seed, paths: build_tiny_ip_adapter(folder, paths["sd"], seed=seed),
        "ip",
        "up0.cross",
        golden="ip-adapter",
        needs=("sd",),
        spec=lambda folder, paths: {"model": paths["sd"], "ip_adapter": folder},
        loss={"timestep": 400},
    )
)
