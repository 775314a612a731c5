"""PixArt-Sigma / PixArt-alpha (``PixArtSigmaPipeline`` / ``PixArtAlphaPipeline``) as an attention-feature extractor.

For a batch of images at timestep T the extractor encodes each image with the pipeline's VAE and noises it
as for Stable Diffusion (shared seeded ``eps_vae`` then ``eps``; ``x_t = sqrt(abar_T) z0 + sqrt(1 - abar_T)
eps``: DDPM's ``add_noise`` on the model's own beta schedule), then runs the transformer with timestep T on
the guidance pair ``["", prompt]`` from the pipeline's own ``encode_prompt`` (T5 states with their attention
masks; the pipeline's own maximum length: 300 tokens for Sigma, 120 for alpha; the prompt lower-cased and
stripped, as the pipeline does without ``clean_caption``). Models with resolution /
aspect-ratio micro-conditioning (PixArt-alpha 1024) are told the real input size, as the alpha pipeline
does. Q/K/V are taken at ``transformer_blocks.L.attn1`` (self-attention; its input is the block's
adaLN-single-modulated ``norm1`` output); the pass stops after the last requested block. The paper's step
K is ``T = scheduler.timesteps[K]`` after ``set_timesteps(1000)`` (DPM-Solver, linspace: about 999 - K).
"""

from __future__ import annotations

from typing import Any

import torch

from .blocks import TransformerPipelineBackbone
from .kinds import KindInfo, register_kind
from .latent_diffusion import guidance_pair
from .protocol import TextCondition
from .timesteps import resolve_timestep, step_table

PIXART = "pixart"
DEFAULT_PIXART = "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"
FOLDERS = "model_index.json, transformer/, vae/, scheduler/, text_encoder/, tokenizer/"


class PixArtBackbone(TransformerPipelineBackbone):
    """Holds a PixArt pipeline's modules; turns pixel batches into per-block self-attention Q/K/V."""

    kind = PIXART
    denoiser_name = "PixArt transformer"
    attn_name = "attn1"
    model_name = "PixArt"
    pipelines = ("PixArtSigmaPipeline", "PixArtAlphaPipeline")
    folders = FOLDERS
    default_model = DEFAULT_PIXART
    transformer_class = "PixArtTransformer2DModel"

    def __init__(
        self, pipe: Any, source: str, device: torch.device, dtype: torch.dtype, identity: str | None = None
    ) -> None:
        from diffusers import DDPMScheduler

        super().__init__(pipe, source, device, dtype, identity)
        #: DDPM's add_noise on the pipeline scheduler's own beta schedule (the forward process, as for SD)
        self.forward_process = DDPMScheduler.from_config(pipe.scheduler.config)

    def timestep(self, timestep: int | None = None, step: int | None = None) -> int:
        """The actual T from ``timestep`` or from the paper's ``step`` K (T = scheduler.timesteps[K])."""
        return resolve_timestep(self.scheduler, timestep, step)

    def step_table(self) -> list[int]:
        return step_table(self.scheduler)

    # --------------------------------------------------------------- features
    def model_input(self, z0: torch.Tensor, timestep: int, seed: int) -> torch.Tensor:
        """``sqrt(abar_T) z0 + sqrt(1 - abar_T) eps`` (DDPM's ``add_noise``, in the latents' dtype)."""
        _, eps = self.noise(seed, z0.shape[-1])
        t = torch.full((z0.shape[0],), timestep, dtype=torch.long, device=z0.device)
        return self.forward_process.add_noise(z0, eps.to(z0.device, z0.dtype).expand_as(z0), t)

    def encode_prompt(self, prompt: str) -> tuple[torch.Tensor, ...]:
        """(cond, cond_mask, uncond, uncond_mask) from the pipeline's ``encode_prompt`` (negative prompt "")."""
        return tuple(
            self.pipe.encode_prompt(prompt, do_classifier_free_guidance=True, negative_prompt="", device=self.device)
        )

    def micro_conditioning(self, height: int, width: int, rows: int) -> dict[str, torch.Tensor | None]:
        """PixArt's resolution / aspect-ratio conditioning (the real input size) where the model takes it."""
        if not self.transformer.use_additional_conditions:
            return {"resolution": None, "aspect_ratio": None}
        size = torch.tensor([[height, width]], dtype=self.dtype, device=self.device)
        ratio = torch.tensor([[height / width]], dtype=self.dtype, device=self.device)
        return {"resolution": size.expand(rows, 2), "aspect_ratio": ratio.expand(rows, 1)}

    def conditioning(
        self, condition: TextCondition, n: int, branches: int, latents: torch.Tensor, pixels: torch.Tensor | None
    ) -> dict[str, Any]:
        cond, cond_mask, uncond, uncond_mask = self.text_conditioning(condition.prompt)
        states = guidance_pair(cond, uncond, n, branches)
        f = self.latent_factor
        return {
            "encoder_hidden_states": states,
            "encoder_attention_mask": guidance_pair(cond_mask, uncond_mask, n, branches),
            "added_cond_kwargs": self.micro_conditioning(latents.shape[-2] * f, latents.shape[-1] * f, states.shape[0]),
        }


register_kind(
    KindInfo(
        PIXART,
        "a PixArt-Sigma / PixArt-alpha pipeline (PixArtSigmaPipeline, PixArtAlphaPipeline)",
        PixArtBackbone,
        "diffsim-s-pixart",
        pipelines=PixArtBackbone.pipelines,
        denoiser="transformer",
        # the hub's PixArt-alpha configs still say Transformer2DModel (diffusers remaps it by its adaLN-single norm)
        config_rule=lambda t: (
            t.get("_class_name") == "PixArtTransformer2DModel" or t.get("norm_type") == "ada_norm_single"
        ),
    )
)
