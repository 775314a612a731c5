"""Build a tiny random-weight Stable Diffusion XL pipeline with SDXL's layout and save it.

Real classes throughout: a ``UNet2DConditionModel`` with ``addition_embed_type="text_time"`` (DownBlock2D +
2 CrossAttnDownBlock2D with 2 and 3 transformer blocks per attention, like SDXL's 2 and 10), a
``CLIPTextModel`` + ``CLIPTextModelWithProjection`` with two tokenizers, an ``EulerDiscreteScheduler`` with
SDXL's config and an ``AutoencoderKL`` (downscale 8, scaling factor 0.13025, force_upcast), saved with
``StableDiffusionXLPipeline.save_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .tiny_builders import TinyBackbone, register_tiny
from .tiny_sd import clip_text_fields, clip_tokenizer, tiny_vae
from .tiny_spread import sharpen_attention, vae_carries_image

SDXL_SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "use_karras_sigmas": False,
}


def build_tiny_sdxl(path: str | Path, seed: int = 0, force_zeros_for_empty_prompt: bool = True) -> Path:
    """Write a tiny StableDiffusionXLPipeline folder to ``path`` and return it."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    path = Path(path)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(16, 32, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 3),
        attention_head_dim=(2, 4, 4),
        norm_num_groups=8,
        cross_attention_dim=32,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=6 * 4 + 8,
    )
    vae = tiny_vae(scaling_factor=0.13025, force_upcast=True)
    sharpen_attention(unet, 3.0)
    vae_carries_image(vae)
    tokenizer = clip_tokenizer(path)
    ids = clip_text_fields(tokenizer)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=16, **ids))
    text_2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=16, projection_dim=8, **ids))
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text,
        text_encoder_2=text_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER_CONFIG),
        force_zeros_for_empty_prompt=force_zeros_for_empty_prompt,
        add_watermarker=False,
    )
    pipe.save_pretrained(path)
    return path


register_tiny(
    TinyBackbone(
        "sdxl",
        lambda folder, seed, paths: build_tiny_sdxl(folder, seed=seed),
        "sdxl",
        "up0",
        loss={"layer": "up0", "timestep": 300, "seed": 3},
    )
)
