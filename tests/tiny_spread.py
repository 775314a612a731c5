"""Make tiny random models give spread-out scores (random default weights give ~0.999 for every pair).

Applied to the weights *before* saving, so the tests still load them through the real paths:
attention query/key projections are scaled up (sharper, image-dependent attention maps), and the VAE
encoder's output is scaled up with a small posterior std, so the latents carry the image rather than
the shared noise.
"""

from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def sharpen_attention(model: nn.Module, factor: float = 3.0) -> None:
    """Multiply every attention module's to_q / to_k weights by ``factor``."""
    for module in model.modules():
        if hasattr(module, "to_q") and hasattr(module, "to_k") and isinstance(module.to_q, nn.Linear):
            module.to_q.weight.mul_(factor)
            module.to_k.weight.mul_(factor)


@torch.no_grad()
def vae_carries_image(vae: nn.Module, gain: float = 4.0, logvar: float = -6.0) -> None:
    """Scale the latent mean up and pin the log-variance low (the posterior sample ~ its mean)."""
    conv = vae.quant_conv if getattr(vae, "quant_conv", None) is not None else vae.encoder.conv_out
    c = conv.out_channels // 2
    conv.weight[:c].mul_(gain)
    conv.bias[:c].mul_(gain)
    conv.weight[c:].zero_()
    conv.bias[c:].fill_(logvar)
