"""A straightforward, independent DiffSim-S implementation: per pair, full U-Net forward, hooks.

Written from the paper (Eq. 7-10) and the method description, deliberately naive: for every pair it
loads both images, VAE-encodes both, encodes the text, runs the *full* U-Net on each image and
computes attention by hand (explicit softmax, no SDPA). Used by the parity tests and by
``benchmarks/bench_core.py`` as the baseline.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageOps


def load_pixels(path: str, size: int) -> torch.Tensor:
    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB").resize((size, size), Image.LANCZOS)
    arr = np.asarray(im).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None] * 2.0 - 1.0


def text_embedding(tokenizer, text_encoder, prompt: str, device) -> torch.Tensor:
    ids = tokenizer(
        [prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(ids.to(device))[0]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).permute(0, 2, 1, 3)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    w = torch.softmax(q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ v.double()


@torch.no_grad()
def image_qkv(
    parts, pixels: torch.Tensor, layer: str, timestep: int, prompt: str, seed: int, single_branch: bool = False
):
    """Q, K, V (branches, heads, T, D) of one image at ``layer``: full forward with a pre-hook."""
    vae, unet = parts.vae, parts.unet
    device, dtype = next(unet.parameters()).device, next(unet.parameters()).dtype
    dist = vae.encode(pixels.to(device, dtype)).latent_dist
    gen = torch.Generator("cpu").manual_seed(seed)
    eps_vae = torch.randn(dist.mean.shape, generator=gen)
    eps = torch.randn(dist.mean.shape, generator=gen)
    z0 = vae.config.scaling_factor * (dist.mean.float() + dist.std.float() * eps_vae.to(device))
    abar = parts.scheduler.alphas_cumprod[timestep].item()
    xt = (math.sqrt(abar) * z0 + math.sqrt(1.0 - abar) * eps.to(device)).to(dtype)
    cond = text_embedding(parts.tokenizer, parts.text_encoder, prompt, device)
    if single_branch:
        sample, emb = xt, cond
    else:
        uncond = text_embedding(parts.tokenizer, parts.text_encoder, "", device)
        sample, emb = torch.cat([xt, xt]), torch.cat([uncond, cond])
    module = dict(unet.named_modules())[layer]
    seen = {}

    def hook(mod, args, kwargs):
        seen["x"] = args[0] if args else kwargs["hidden_states"]

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        unet(sample, timestep, encoder_hidden_states=emb)
    finally:
        handle.remove()
    x = seen["x"]
    return tuple(_split_heads(proj(x), module.heads) for proj in (module.to_q, module.to_k, module.to_v))


def _cos(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.flatten().double(), y.flatten().double()
    return float(x @ y / (x.norm() * y.norm()))


@torch.no_grad()
def reference_score(
    parts, image_a, image_b, layer: str, timestep: int, prompt: str, seed: int, size: int, single_branch: bool = False
) -> float:
    """DiffSim-S of one pair from scratch: (AAS(A,B) + AAS(B,A)) / 2."""
    pa = load_pixels(image_a, size) if isinstance(image_a, str) else image_a
    pb = load_pixels(image_b, size) if isinstance(image_b, str) else image_b
    qa, ka, va = image_qkv(parts, pa, layer, timestep, prompt, seed, single_branch)
    qb, kb, vb = image_qkv(parts, pb, layer, timestep, prompt, seed, single_branch)
    ab = _cos(_attention(qa, kb, vb), _attention(qa, ka, va))
    ba = _cos(_attention(qb, ka, va), _attention(qb, kb, vb))
    return 0.5 * (ab + ba)
