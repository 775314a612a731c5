"""Build a tiny random-weight DiT pipeline with the hub layout of ``facebook/DiT-XL-2-256`` and save it.

Real classes: a ``DiTTransformer2DModel`` (adaLN-Zero, 1000 classes + the null class, patch 2) saved with
the hub's legacy ``Transformer2DModel`` class name (diffusers remaps it on load), an ``AutoencoderKL``
(downscale 8), the DiT's ``DDIMScheduler`` (linear betas 1e-4..0.02) and an ``id2label`` table in
``model_index.json`` as on the hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from diffsim.backbones.protocol import ClassCondition

from .tiny_builders import TinyBackbone, register_tiny
from .tiny_sd import tiny_vae
from .tiny_spread import sharpen_attention, vae_carries_image

DIT_SCHEDULER_CONFIG = {
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "prediction_type": "epsilon",
}
LABELS = {
    0: "tench, Tinca tinca",
    1: "goldfish, Carassius auratus",
    2: "great white shark, white shark",
    207: "golden retriever",
    281: "tabby, tabby cat",
}


def build_tiny_dit(path: str | Path, seed: int = 0, legacy_class_name: bool = True) -> Path:
    """Write a tiny DiTPipeline folder (sample size 8: native 64 px) to ``path`` and return it."""
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    path = Path(path)
    torch.manual_seed(seed)
    transformer = DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=3,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_zero",
        activation_fn="gelu-approximate",
        attention_bias=True,
        norm_elementwise_affine=False,
    )
    vae = tiny_vae()
    with torch.no_grad():  # random adaLN-Zero modulation starts at zero: give it weights so classes matter
        for block in transformer.transformer_blocks:
            block.norm1.linear.weight.normal_(0, 0.2)
        transformer.pos_embed.proj.weight.mul_(8.0)  # let the image, not the positional code, dominate
    sharpen_attention(transformer, 3.0)
    vae_carries_image(vae)
    pipe = DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler(**DIT_SCHEDULER_CONFIG))
    pipe.save_pretrained(path)
    index = json.loads((path / "model_index.json").read_text())
    index["id2label"] = {str(i): LABELS.get(i, f"class {i}") for i in range(1000)}
    if legacy_class_name:  # as on the hub: facebook/DiT-XL-2-256 says Transformer2DModel
        index["transformer"] = ["diffusers", "Transformer2DModel"]
        cfg = json.loads((path / "transformer" / "config.json").read_text())
        cfg["_class_name"] = "Transformer2DModel"
        (path / "transformer" / "config.json").write_text(json.dumps(cfg, indent=2))
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path


register_tiny(
    TinyBackbone(
        "dit",
        lambda folder, seed, paths: build_tiny_dit(folder, seed=seed),
        "dit",
        "block1",
        condition=ClassCondition(1),
        settings={"layer": "block1", "timestep": 150},
        loss={"timestep": 400},
    )
)
