"""Build a tiny random-weight Stable Diffusion 3 / 3.5 pipeline with SD3's layout and save it.

Real classes throughout: an ``SD3Transformer2DModel`` (joint blocks; ``variant="sd35"``: qk RMS-norm and a
dual-attention first block, as SD3.5 Medium), the 16-channel ``AutoencoderKL`` with ``shift_factor`` (no
quant convs), two ``CLIPTextModelWithProjection`` + a ``T5EncoderModel`` with their tokenizers and a
``FlowMatchEulerDiscreteScheduler`` with SD3's config (shift 3), saved with
``StableDiffusion3Pipeline.save_pretrained`` (model_index.json and one folder per component). Native size
128 px (latent 16, patch 2: 8 x 8 image tokens).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .tiny_builders import TinyBackbone, register_tiny
from .tiny_sd import clip_text_fields, clip_tokenizer, tiny_vae
from .tiny_spread import vae_carries_image
from .tiny_t5 import tiny_t5_encoder, tiny_t5_tokenizer

SD3_SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "shift": 3.0}
SD3_SIZE = 128


@torch.no_grad()
def sharpen_joint_attention(transformer: torch.nn.Module, factor: float) -> None:
    """Sharper image-dependent attention: scale the image stream's q/k (its RMS-norm gains under qk-norm, where
    scaling the projections would be normalised away)."""
    for block in transformer.transformer_blocks:
        for attn in (block.attn, block.attn2):
            if attn is None:
                continue
            if attn.norm_q is not None:
                attn.norm_q.weight.mul_(factor)
                attn.norm_k.weight.mul_(factor)
            else:
                attn.to_q.weight.mul_(factor)
                attn.to_k.weight.mul_(factor)


def build_tiny_sd3(path: str | Path, seed: int = 0, variant: str = "sd3") -> Path:
    """Write a tiny StableDiffusion3Pipeline folder to ``path`` and return it (``variant``: "sd3" or "sd35")."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    path = Path(path)
    sd35 = variant == "sd35"
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=SD3_SIZE // 8,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=3,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,  # the T5 width
        caption_projection_dim=16,  # = heads x head dim
        pooled_projection_dim=16,  # the two CLIP projections, 8 + 8
        pos_embed_max_size=24,  # up to 384 px
        dual_attention_layers=(0,) if sd35 else (),
        qk_norm="rms_norm" if sd35 else None,
    )
    vae = tiny_vae(
        SD3_SIZE,
        16,
        scaling_factor=1.5305,
        shift_factor=0.0609,
        use_quant_conv=False,
        use_post_quant_conv=False,
        force_upcast=True,
    )
    with torch.no_grad():
        for block in transformer.transformer_blocks:  # let the timestep / pooled text modulate visibly
            block.norm1.linear.weight.mul_(4.0)
        transformer.pos_embed.proj.weight.mul_(4.0)  # the image, not the positional code, dominates
    sharpen_joint_attention(transformer, 3.0)
    vae_carries_image(vae)
    clip_tok = clip_tokenizer(path)
    ids = clip_text_fields(clip_tok, projection_dim=8)
    text = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=8, **ids))
    text_2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=16, **ids))
    t5_tok = tiny_t5_tokenizer()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(**SD3_SCHEDULER_CONFIG),
        vae=vae,
        text_encoder=text,
        tokenizer=clip_tok,
        text_encoder_2=text_2,
        tokenizer_2=clip_tok,
        text_encoder_3=tiny_t5_encoder(len(t5_tok), 32, seed),
        tokenizer_3=t5_tok,
    )
    pipe.save_pretrained(path)
    return path


register_tiny(
    TinyBackbone(
        "sd3",
        lambda folder, seed, paths: build_tiny_sd3(folder, seed=seed, variant="sd35"),
        "sd3",
        "block1",
        settings={"layer": "block1"},
        # diffusers' RMSNorm (SD3.5's qk-norm) takes the variance in float32 even on float64 input: float64
        # differences at step 1e-6 are float32 round-off (they agree with the gradient at steps 1e-3 to 1e-4)
        gradcheck=False,
    )
)
