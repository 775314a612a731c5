"""A tiny random SD pipeline whose scores mean something: latents carry the image, attention is peaked.

A random tiny model scores every pair ~0.999: its VAE samples latents with unit posterior noise that
swamps the image, and its near-uniform attention averages every token alike. This copy of a tiny
pipeline (built by :mod:`tests.tiny_sd`) sets the VAE posterior variance to ~0, scales the latents to
unit variance on the given calibration images, and multiplies every self-attention's query and key
weights by ``qk_scale``. The weights stay random: pictures made with it show the machinery, not
learned similarity.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import torch


def sharpen_pipeline(
    src: str | Path, dst: str | Path, calibration: Sequence, size: int = 64, qk_scale: float = 4.0
) -> Path:
    """Copy the diffusers folder ``src`` to ``dst`` with a deterministic VAE and peaked self-attention."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from diffsim.images import to_unit_tensor

    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    vae = AutoencoderKL.from_pretrained(dst / "vae")
    c = int(vae.config.latent_channels)
    with torch.no_grad():
        vae.quant_conv.weight[c:] = 0.0
        vae.quant_conv.bias[c:] = -30.0  # log-variance: the posterior sample is its mean
        pixels = torch.stack([to_unit_tensor(im, size) for im in calibration]) * 2.0 - 1.0
        mean = vae.encode(pixels).latent_dist.mean
    vae.register_to_config(scaling_factor=float(1.0 / mean.std()))
    vae.save_pretrained(dst / "vae")
    unet = UNet2DConditionModel.from_pretrained(dst / "unet")
    with torch.no_grad():
        for name, module in unet.named_modules():
            if name.endswith("attn1"):
                module.to_q.weight.mul_(qk_scale)
                module.to_k.weight.mul_(qk_scale)
    unet.save_pretrained(dst / "unet")
    return dst
