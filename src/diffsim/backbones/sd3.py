"""Stable Diffusion 3 / 3.5 (``StableDiffusion3Pipeline``: an MM-DiT) as an attention-feature extractor.

For a batch of images at timestep T (1..1000, the transformer's timestep input) the extractor

1. encodes each image with the 16-channel VAE: ``z0 = (mean + std * eps_vae - shift_factor) * scaling_factor``;
2. noises it along the rectified-flow path: ``sigma = T / 1000``, ``x_t = (1 - sigma) * z0 + sigma * eps``
   (``eps_vae`` then ``eps`` from one CPU generator seeded ``seed``, the same for every image; no
   scheduler shift);
3. runs the transformer with ``timestep = T`` (= ``sigma * 1000``, as diffusers' pipeline passes it) on the
   guidance pair ``["", prompt]`` from the pipeline's own ``encode_prompt`` (prompt and pooled embeddings,
   both halves kept), and captures at joint block L (``transformer_blocks.L.attn``) the **image stream's**
   Q/K/V: ``to_q/to_k/to_v`` of the block's ``norm1``-modulated image tokens, split into heads, with
   ``norm_q`` / ``norm_k`` where the model has qk-norm (SD3.5). The text tokens take no part; SD3.5's
   second image-only attention (``attn2``) is not read. The pass stops after the last requested block.

Steps: the paper's index K maps to the unshifted flow-matching table ``T = 1000 - K`` (``sigma = 1 - K/1000``):
step 500 is sigma 0.5, and higher steps are less noisy, as on SD (step 900 -> T = 100).
"""

from __future__ import annotations

from typing import Any

import torch

from ..aas import QKV
from ..errors import ConfigError, TimestepError
from .blocks import TransformerPipelineBackbone
from .capture import project_qkv
from .kinds import KindInfo, register_kind
from .latent_diffusion import guidance_pair
from .protocol import TextCondition

SD3 = "sd3"
DEFAULT_SD3 = "stabilityai/stable-diffusion-3-medium-diffusers"
FOLDERS = (
    "model_index.json, transformer/, vae/, scheduler/, text_encoder/, text_encoder_2/, text_encoder_3/, "
    "tokenizer/, tokenizer_2/, tokenizer_3/"
)


def flow_step_table(n: int = 1000) -> list[int]:
    """The paper's step axis on a rectified-flow model: ``T = n - K`` for K in 0..n-1 (sigma = T / n)."""
    return [n - k for k in range(n)]


def image_stream_qkv(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> QKV:
    """Q/K/V of a joint attention's image tokens alone (``hidden_states``; the context stream is ignored),
    with the module's ``norm_q`` / ``norm_k`` applied where it has them."""
    hidden = args[0] if args else kwargs["hidden_states"]
    return project_qkv(module, hidden)


class SD3Backbone(TransformerPipelineBackbone):
    """Holds an SD3 / SD3.5 pipeline's modules; turns pixel batches into per-block image-stream Q/K/V."""

    kind = SD3
    denoiser_name = "SD3 transformer"
    attn_name = "attn"
    model_name = "SD3"
    pipelines = ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline")
    folders = FOLDERS
    default_model = DEFAULT_SD3
    transformer_class = "SD3Transformer2DModel"
    text_encoders = ("text_encoder", "text_encoder_2", "text_encoder_3")
    #: text_encoder_3=False: load without the T5 encoder (its part of the prompt embedding is zeros, as in
    #: diffusers' ``text_encoder_3=None``)
    load_options = {"text_encoder_3": True}

    @classmethod
    def pipeline_kwargs(cls, options: dict[str, Any]) -> dict[str, Any]:
        return {} if options["text_encoder_3"] else {"text_encoder_3": None, "tokenizer_3": None}

    @property
    def max_size(self) -> int:
        """The largest image side the positional embedding covers (``pos_embed_max_size`` patches)."""
        return int(self.transformer.config.pos_embed_max_size) * self.size_multiple

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    def step_table(self) -> list[int]:
        return flow_step_table(self.num_train_timesteps)

    def timestep(self, timestep: int | None = None, step: int | None = None) -> int:
        """T (sigma = T / 1000) from ``timestep`` or from the paper's ``step`` K (T = 1000 - K)."""
        n = self.num_train_timesteps
        if timestep is not None and step is not None:
            raise ConfigError("give either timestep (the actual T) or step (the paper's index), not both")
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < n:
                raise TimestepError(f"step must be an integer in 0..{n - 1} (SD3: T = {n} - step); got {step!r}")
            return flow_step_table(n)[step]
        if timestep is None:
            raise ValueError("timestep or step is required")
        if isinstance(timestep, bool) or not isinstance(timestep, int) or not 0 <= timestep <= n:
            raise TimestepError(
                f"timestep must be an integer 0 <= T <= {n} (sigma = T / {n} on SD3's flow path); got {timestep!r}"
            )
        return timestep

    # --------------------------------------------------------------- features
    def model_input(self, z0: torch.Tensor, timestep: int, seed: int) -> torch.Tensor:
        """``(1 - sigma) z0 + sigma eps`` with ``sigma = T / 1000`` (the rectified-flow forward process)."""
        side = z0.shape[-1] * self.latent_factor
        if max(z0.shape[-2:]) * self.latent_factor > self.max_size:
            raise ConfigError(f"size {side} is larger than this SD3 model takes ({self.max_size} px)")
        _, eps = self.noise(seed, z0.shape[-1])
        sigma = timestep / self.num_train_timesteps
        return (1.0 - sigma) * z0 + sigma * eps.to(z0.device, z0.dtype)

    def encode_prompt(self, prompt: str) -> tuple[torch.Tensor, ...]:
        """(cond, uncond, pooled, uncond_pooled) from the pipeline's ``encode_prompt`` (negative prompt "")."""
        return tuple(
            self.pipe.encode_prompt(
                prompt, None, None, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=True
            )
        )

    def conditioning(
        self, condition: TextCondition, n: int, branches: int, latents: torch.Tensor, pixels: torch.Tensor | None
    ) -> dict[str, Any]:
        cond, uncond, pooled, uncond_pooled = self.text_conditioning(condition.prompt)
        return {
            "encoder_hidden_states": guidance_pair(cond, uncond, n, branches),
            "pooled_projections": guidance_pair(pooled, uncond_pooled, n, branches),
        }

    def project(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> QKV:
        """The image stream's Q/K/V of a joint attention block (text tokens left out)."""
        return image_stream_qkv(module, args, kwargs)

    def hooked(
        self, sample: torch.Tensor, t: torch.Tensor, layers: list[str], inputs: dict[str, Any], stop_early: bool
    ) -> dict[str, QKV]:
        # sigma * 1000, a float as the pipeline passes it
        return super().hooked(sample, t.to(torch.float32), layers, inputs, stop_early)


register_kind(
    KindInfo(
        SD3,
        "a Stable Diffusion 3 / 3.5 pipeline (StableDiffusion3Pipeline)",
        SD3Backbone,
        "diffsim-s-sd3",
        pipelines=SD3Backbone.pipelines,
        denoiser="transformer",
        config_rule=lambda t: t.get("_class_name") == "SD3Transformer2DModel",
    )
)
