"""Build a tiny random-weight Stable Diffusion pipeline with the SD 1.5 block layout and save it.

Used by the tests (loaded back through the real ``from_pretrained`` path). The architecture classes are
the real diffusers / transformers ones: CrossAttnDownBlock2D x3 + DownBlock2D, UpBlock2D +
CrossAttnUpBlock2D x3, 2 layers per block, a 4-level VAE (downscale 8) and a CLIP text encoder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .tiny_builders import TinyBackbone, register_tiny

SD15_UNET_CONFIG = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

SD15_SCHEDULER_CONFIG = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable character table."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=False))


def _tokenizer_files(folder: Path) -> None:
    """A byte-level BPE vocabulary with every single byte and a few merges (CLIP tokenizer format)."""
    chars = list(_bytes_to_unicode().values())
    vocab = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = ["h i", "q u", "a l", "i t", "i m", "a g"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def tiny_vae(sample_size: int = 64, latent_channels: int = 4, **config: Any) -> Any:
    """The tiny ``AutoencoderKL`` every tiny latent-diffusion model uses (4 blocks: downscale 8); ``config``:
    the model's own fields (scaling / shift factor, force_upcast...)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=sample_size,
        **config,
    )


def clip_tokenizer(path: Path) -> Any:
    """A tiny byte-level CLIP tokenizer from files written beside ``path`` (``<name>-tokenizer-files``)."""
    from transformers import CLIPTokenizer

    folder = path.parent / f"{path.name}-tokenizer-files"
    _tokenizer_files(folder)
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def clip_text_fields(tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """The ``CLIPTextConfig`` fields of the SDXL / SD3 tiny text encoders but ``hidden_size``."""
    return {
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "vocab_size": len(tokenizer),
        "intermediate_size": 37,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        **extra,
    }


def build_tiny_pipeline(path: str | Path, seed: int = 0, variant: str = "sd15") -> Path:
    """Write a tiny diffusers folder to ``path`` and return it.

    ``variant="sd15"``: the SD 1.5 layout (PNDM scheduler). ``variant="sd2"``: the SD 2.x differences:
    per-block head dimensions, linear projections in the transformers, a v-prediction DDIM scheduler.
    """
    from diffusers import DDIMScheduler, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = Path(path)
    torch.manual_seed(seed)
    sd2 = variant == "sd2"
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(16, 32, 32, 32),
        norm_num_groups=8,
        cross_attention_dim=32,
        attention_head_dim=(4, 8, 8, 8) if sd2 else 2,
        use_linear_projection=sd2,
        down_block_types=SD15_UNET_CONFIG["down_block_types"],
        up_block_types=SD15_UNET_CONFIG["up_block_types"],
    )
    vae = tiny_vae()
    _tokenizer_files(path / "tokenizer")
    tokenizer = CLIPTokenizer(
        str(path / "tokenizer" / "vocab.json"), str(path / "tokenizer" / "merges.txt"), model_max_length=77
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet.save_pretrained(path / "unet")
    vae.save_pretrained(path / "vae")
    text.save_pretrained(path / "text_encoder")
    tokenizer.save_pretrained(path / "tokenizer")
    if sd2:
        cfg = {k: v for k, v in SD15_SCHEDULER_CONFIG.items() if k != "skip_prk_steps"}
        scheduler = DDIMScheduler(**cfg, prediction_type="v_prediction")
    else:
        scheduler = PNDMScheduler(**{k: v for k, v in SD15_SCHEDULER_CONFIG.items() if k != "clip_sample"})
    scheduler.save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "scheduler": ["diffusers", type(scheduler).__name__],
                "safety_checker": [None, None],
                "feature_extractor": [None, None],
                "requires_safety_checker": False,
            }
        )
    )
    return path


register_tiny(
    TinyBackbone(
        "sd",
        lambda folder, seed, paths: build_tiny_pipeline(folder, seed=seed),
        "sd",
        "up0",
        loss={"layer": "up1"},
        loss_model="sharp_sd_path",
    )
)
