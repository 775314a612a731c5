"""Shared helpers for the benchmark scripts: a random-weight SD 1.5 architecture and test images."""
from __future__ import annotations

import os
import platform
import resource
import sys
import tempfile
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning (as tests/__init__.py): spinning threads made tiny models ~30x
# slower on the shared, loaded CPU. Read when torch first loads: scripts that import torch first set it themselves.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.tiny_sd / tests.reference_impl

from tests.tiny_sd import SD15_SCHEDULER_CONFIG, SD15_UNET_CONFIG, _tokenizer_files  # noqa: E402

SD15_VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                       layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4,
                       up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512, scaling_factor=0.18215)


def sd15_random(seed: int = 0):
    """The real SD 1.5 U-Net, VAE and CLIP ViT-L/14 text encoder architectures with random weights."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from diffsim.backbones.loading import SDComponents, prepare_components

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
    vae = AutoencoderKL(**SD15_VAE_CONFIG)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        hidden_act="quick_gelu"))
    tok_dir = Path(tempfile.mkdtemp()) / "tokenizer"
    _tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    sched = PNDMScheduler(**{k: v for k, v in SD15_SCHEDULER_CONFIG.items() if k != "clip_sample"})
    parts = SDComponents(vae, unet, text, tokenizer, sched, "random-sd15")
    return prepare_components(parts, torch.float32, "cpu")  # as the library keeps them: no VAE decoder


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> list[str]:
    """n distinct smooth random RGB images saved as PNG."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        low = rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)
        im = Image.fromarray(low).resize((size, size), Image.BICUBIC)
        p = folder / f"img_{i:02d}.png"
        im.save(p)
        paths.append(str(p))
    return paths


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, GiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024**2


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
