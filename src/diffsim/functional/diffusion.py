"""Differentiable Q/K/V from the latent-diffusion backbones (SD 1.x/2.x, SDXL, DiT, SD + IP-Adapter).

The computation is the backbones' own ``extract`` (one implementation: VAE posterior sample with the
seeded ``eps_vae``, forward noising to T with the model's own scheduler, the guidance pair, Q/K/V at
the requested attention layers, stopping after the last one), called with ``grad=True``: no
``no_grad``, no content hash, no latent cache, so gradients reach the pixels. The parameters stay
frozen (``requires_grad=False``); only the inputs carry gradients. What is functional-only lives here:
fresh noise draws and the [0, 1] -> [-1, 1] input convention.

Precision: the networks run in the backbone's dtype; noising and everything after the VAE run in
``promote(float32, input dtype)`` (float32 as the cached path, float64 for ``gradcheck``).
"""

from __future__ import annotations

from typing import Any

import torch

from ..aas import QKV
from ..backbones.latent_diffusion import LatentDiffusionBackbone
from ..backbones.latents import Noise
from ..backbones.unet_forward import gradient_checkpointing
from ..errors import ConfigError

__all__ = ["Noise", "diffusion_qkv", "fresh_noise", "gradient_checkpointing", "materialise", "seeded_noise"]


def materialise(backbone: Any) -> Any:
    """The loaded backbone (a lazy SD stand-in loads its weights now: a forward pass is needed)."""
    from ..backbones.lazy import LazyStableDiffusion

    return backbone.real() if isinstance(backbone, LazyStableDiffusion) else backbone


def seeded_noise(backbone: Any, seed: int, side: int) -> Noise:
    """(eps_vae, eps), each (1, C, side, side) float32: the backbone's own seeded draw (as the cached path)."""
    return backbone.noise(seed, side)


def fresh_noise(backbone: Any, side: int, generator: torch.Generator) -> Noise:
    """A new (eps_vae, eps) draw from ``generator`` (score-distillation style losses)."""
    c = int(backbone.vae.config.latent_channels)
    eps_vae = torch.randn((1, c, side, side), generator=generator, dtype=torch.float32)
    eps = torch.randn((1, c, side, side), generator=generator, dtype=torch.float32)
    return eps_vae, eps


def diffusion_qkv(
    backbone: Any,
    pixels: torch.Tensor,
    layers: list[str],
    timestep: int,
    condition: Any,
    seed: int,
    noise: Noise | None = None,
    single_branch: bool = False,
    checkpoint: bool = False,
) -> dict[str, QKV]:
    """Q/K/V at module paths ``layers`` for pixels (N, 3, S, S) in [0, 1]: each ``(N, branches, H, T, D)``.

    ``condition``: a :data:`~diffsim.backbones.protocol.Condition`, a prompt or a class id. ``noise``:
    (eps_vae, eps) replacing the backbone's draw seeded ``seed`` (e.g. :func:`fresh_noise`).
    ``checkpoint``: gradient checkpointing in the U-Net and VAE (SD, SDXL).
    """
    backbone = materialise(backbone)
    if not isinstance(backbone, LatentDiffusionBackbone):
        kind = getattr(backbone, "kind", None)
        raise ConfigError(f"no differentiable diffusion path for a {type(backbone).__name__} backbone (kind {kind!r})")
    return backbone.extract(
        pixels * 2.0 - 1.0,
        layers,
        timestep,
        condition,
        seed,
        1 if single_branch else 2,
        grad=True,
        noise=noise,
        checkpoint=checkpoint,
    )
