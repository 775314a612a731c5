"""A tiny SD-layout model whose scores separate images, and labelled galleries made by augmentation.

Random tiny weights score every pair ~0.999; attention query/key weights scaled x3 and a VAE scaling
factor of 4 (so the latents carry the image against the noise) spread the scores (0.87 .. 0.98 on
random smooth images at 64 px), which retrieval tests need.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from .tiny_sd import build_tiny_pipeline


def build_discriminative_pipeline(
    path: str | Path, seed: int = 0, qk_scale: float = 3.0, vae_scaling: float = 4.0
) -> Path:
    """:func:`build_tiny_pipeline`, then self-attention Q/K weights x ``qk_scale`` and the VAE scaling factor."""
    from safetensors.torch import load_file, save_file

    path = build_tiny_pipeline(path, seed=seed)
    weights = path / "unet" / "diffusion_pytorch_model.safetensors"
    sd = load_file(weights)
    for k in sd:
        if "attn1.to_q.weight" in k or "attn1.to_k.weight" in k:
            sd[k] = sd[k] * qk_scale
    save_file(sd, weights)
    cfg_file = path / "vae" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["scaling_factor"] = vae_scaling
    cfg_file.write_text(json.dumps(cfg))
    return path


def smooth_photo(rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A smooth random colour image (a stand-in for a photo)."""
    low = rng.uniform(0, 255, (5, 5, 3)).astype(np.uint8)
    return Image.fromarray(low).resize((size, size), Image.BICUBIC)


def augment(photo: Image.Image, rng: np.random.Generator, out_size: int = 64) -> Image.Image:
    """A random crop (70-100 %), a horizontal flip half of the time and a mild colour jitter."""
    w, h = photo.size
    s = rng.uniform(0.7, 1.0)
    cw, ch = int(w * s), int(h * s)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = photo.crop((x, y, x + cw, y + ch)).resize((out_size, out_size), Image.BICUBIC)
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.85, 1.15))
    return ImageEnhance.Color(im).enhance(rng.uniform(0.85, 1.15))


def labelled_gallery(
    folder: str | Path, photos: list[Image.Image], per_class: int, seed: int = 0, out_size: int = 64
) -> Path:
    """``folder/class-XX/img-YYYY.png``: ``per_class`` augmentations of each photo (one class per photo)."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for c, photo in enumerate(photos):
        d = folder / f"class-{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            augment(photo, rng, out_size).save(d / f"img-{i:04d}.png")
    return folder
