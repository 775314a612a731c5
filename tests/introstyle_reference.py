"""A straightforward IntroStyle reference, written from the method (arXiv 2412.14432 and the authors'
release), independent of diffsim's backbone code: per image, the diffusers pipeline loaded on its own,
VAE encoding and DDPM noising by hand, the *full* U-Net forward with a forward hook on the up block, the
channel statistics and the 2-Wasserstein distance in float64."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def up_block_output(pipe, pixels: torch.Tensor, block: int, t: int, prompt: str, seed: int) -> torch.Tensor:
    """Output (C, H, W) of ``unet.up_blocks[block]`` for one image (3, S, S) in [-1, 1]; noise from a CPU
    generator seeded with ``seed``: eps_vae then eps (DiffSim-S's draws)."""
    vae, unet = pipe.vae, pipe.unet
    dist = vae.encode(pixels[None]).latent_dist
    gen = torch.Generator("cpu").manual_seed(seed)
    eps_vae = torch.randn(dist.mean.shape, generator=gen)
    eps = torch.randn(dist.mean.shape, generator=gen)
    z0 = vae.config.scaling_factor * (dist.mean + dist.std * eps_vae)
    abar = float(pipe.scheduler.alphas_cumprod[t])
    xt = math.sqrt(abar) * z0 + math.sqrt(1.0 - abar) * eps
    ids = pipe.tokenizer(
        [prompt], padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    text = pipe.text_encoder(ids)[0]
    seen = {}
    handle = unet.up_blocks[block].register_forward_hook(lambda mod, args, out: seen.update(out=out))
    try:
        unet(xt, t, encoder_hidden_states=text)  # the whole U-Net, no early stop
    finally:
        handle.remove()
    return seen["out"][0]


def style_vector(pipe, pixels, block: int, t: int, prompt: str, seed: int, ensemble: int) -> torch.Tensor:
    """[mu_1..mu_C, sigma_1..sigma_C] in float64 of the ensemble-averaged up-block output."""
    maps = sum(up_block_output(pipe, pixels, block, t, prompt, seed + k).double() for k in range(ensemble)) / ensemble
    flat = maps.reshape(maps.shape[0], -1)
    mu = flat.mean(1)
    sigma = ((flat - mu[:, None]) ** 2).mean(1).sqrt()
    return torch.cat([mu, sigma])


def w2(a: torch.Tensor, b: torch.Tensor) -> float:
    """2-Wasserstein distance between N(mu_a, diag sigma_a^2) and N(mu_b, diag sigma_b^2)."""
    return float(((a.double() - b.double()) ** 2).sum().sqrt())
