"""Build a tiny random-weight PixArt-Sigma (or PixArt-alpha) pipeline with PixArt's layout and save it.

Real classes throughout: a ``PixArtTransformer2DModel`` (adaLN-single blocks with self- and cross-attention;
``variant="alpha"``: with resolution / aspect-ratio micro-conditioning, as PixArt-alpha 1024), a T5 encoder
with its tokenizer, an ``AutoencoderKL`` (downscale 8, SDXL's scaling factor) and PixArt's
``DPMSolverMultistepScheduler`` config (linear betas 1e-4..0.02), saved with
``PixArtSigmaPipeline.save_pretrained`` (``PixArtAlphaPipeline`` for alpha). Native size 128 px.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .tiny_builders import TinyBackbone, register_tiny
from .tiny_sd import tiny_vae
from .tiny_spread import sharpen_attention, vae_carries_image
from .tiny_t5 import tiny_t5_encoder, tiny_t5_tokenizer

PIXART_SCHEDULER_CONFIG = {
    "algorithm_type": "dpmsolver++",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "lower_order_final": True,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "solver_order": 2,
    "solver_type": "midpoint",
    "steps_offset": 0,
    "timestep_spacing": "linspace",
    "use_karras_sigmas": False,
}
PIXART_SIZE = 128
VAE_GAIN = 40.0  # latents x 0.13 must still carry the image through the noise at T ~ 500


def build_tiny_pixart(path: str | Path, seed: int = 0, variant: str = "sigma") -> Path:
    """Write a tiny PixArt pipeline folder to ``path`` and return it (``variant``: "sigma" or "alpha")."""
    from diffusers import (
        DPMSolverMultistepScheduler,
        PixArtAlphaPipeline,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )

    path = Path(path)
    alpha = variant == "alpha"
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        num_attention_heads=3,  # 24 channels: alpha's size embedding splits them in three
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=3,
        cross_attention_dim=24,
        caption_channels=32,  # the T5 width
        sample_size=PIXART_SIZE // 8,
        patch_size=2,
        norm_type="ada_norm_single",
        num_embeds_ada_norm=1000,
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        attention_bias=True,
        use_additional_conditions=alpha,
    )
    vae = tiny_vae(PIXART_SIZE, scaling_factor=0.13025)
    with torch.no_grad():
        transformer.pos_embed.proj.weight.mul_(4.0)  # the image, not the positional code, dominates
        for block in transformer.transformer_blocks:  # adaLN-single's table starts near zero: make it count
            block.scale_shift_table.mul_(4.0)
    sharpen_attention(transformer, 3.0)
    vae_carries_image(vae, gain=VAE_GAIN)
    tok = tiny_t5_tokenizer()
    cls = PixArtAlphaPipeline if alpha else PixArtSigmaPipeline
    pipe = cls(
        tokenizer=tok,
        text_encoder=tiny_t5_encoder(len(tok), 32, seed),
        vae=vae,
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(**PIXART_SCHEDULER_CONFIG),
    )
    pipe.save_pretrained(path)
    return path


register_tiny(
    TinyBackbone(
        "pixart",
        lambda folder, seed, paths: build_tiny_pixart(folder, seed=seed),
        "pixart",
        "block1",
        settings={"layer": "block1"},
    )
)
