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

import logging
import os
from typing import Any

import torch

from ..aas import QKV
from ..errors import ConfigError
from ..models import shared_model
from .blocks import block_aliases, block_layers, load_pipeline, resolve_blocks, skeleton_blocks
from .capture import capture
from .detect import require_kind
from .kinds import KindInfo, register_kind
from .latent_diffusion import LatentDiffusionBackbone, guidance_pair
from .layers import AttentionLayer
from .protocol import TextCondition
from .spec import LoadSpec
from .timesteps import resolve_timestep, step_table

logger = logging.getLogger(__name__)

PIXART = "pixart"
DEFAULT_PIXART = "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"
PIPELINES = ("PixArtSigmaPipeline", "PixArtAlphaPipeline")
FOLDERS = "model_index.json, transformer/, vae/, scheduler/, text_encoder/, tokenizer/"


class PixArtBackbone(LatentDiffusionBackbone):
    """Holds a PixArt pipeline's modules; turns pixel batches into per-block self-attention Q/K/V."""

    kind = PIXART
    condition_type = TextCondition
    denoiser_name = "PixArt transformer"
    weights_loaded = True

    def __init__(
        self, pipe: Any, source: str, device: torch.device, dtype: torch.dtype, identity: str | None = None
    ) -> None:
        from diffusers import DDPMScheduler

        self.pipe = pipe
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        self.scheduler = pipe.scheduler
        #: DDPM's add_noise on the pipeline scheduler's own beta schedule (the forward process, as for SD)
        self.forward_process = DDPMScheduler.from_config(pipe.scheduler.config)
        self.vae.decoder = None  # never decode
        self.vae.post_quant_conv = None
        for m in (self.vae, self.transformer, pipe.text_encoder):
            if next(m.parameters()).dtype != dtype:
                m.to(dtype=dtype)
            m.to(device=device).eval().requires_grad_(False)
        if dtype == torch.float16 and getattr(self.vae.config, "force_upcast", True):
            self.vae.to(dtype=torch.float32)  # PixArt-Sigma's SDXL VAE overflows in fp16
        self.device, self.dtype, self.source = device, dtype, source
        self.identity = identity or LoadSpec(source).identity()
        self._text: dict[str, tuple[torch.Tensor, ...]] = {}
        self.init_latent_state()
        self.passes = 0

    @classmethod
    def from_pretrained(
        cls, model: str | os.PathLike = DEFAULT_PIXART, share: bool = True, **spec: Any
    ) -> PixArtBackbone:
        """Load (or reuse) a PixArt pipeline from a hub id or a diffusers folder; ``spec``: device, dtype,
        revision, variant."""
        return cls.load(LoadSpec(model, **spec), share)

    @classmethod
    def load(cls, spec: LoadSpec, share: bool = True) -> PixArtBackbone:
        """Load (or reuse) the PixArt pipeline ``spec`` names (its model_index.json says Sigma or alpha)."""
        from diffusers import DiffusionPipeline

        dev, dt = spec.torch_device, spec.torch_dtype
        spec = LoadSpec(spec.model, spec.device, spec.dtype, spec.revision, spec.variant)  # what PixArt reads

        def load() -> PixArtBackbone:
            require_kind(spec.model, (PIXART,), "the PixArt backbone", spec.revision)
            logger.info("loading PixArt %s on %s (%s)", spec.model, dev, dt)
            kw: dict[str, Any] = {"torch_dtype": dt, "revision": spec.revision, "variant": spec.variant}
            pipe = load_pipeline(DiffusionPipeline, spec.model, "PixArt model", FOLDERS, "PixArtSigmaPipeline", **kw)
            if type(pipe).__name__ not in PIPELINES:
                raise ConfigError(
                    f"{spec.model} is a {type(pipe).__name__}, not a PixArt pipeline ({', '.join(PIPELINES)})"
                )
            return cls(pipe, str(spec.model), dev, dt, spec.identity())

        return shared_model(spec.key(PIXART), load, share)

    def clear_caches(self) -> None:
        self._text.clear()
        super().clear_caches()

    # ---------------------------------------------------------------- metadata
    @property
    def denoiser(self) -> Any:
        return self.transformer

    @property
    def patch_size(self) -> int:
        return int(self.transformer.config.patch_size)

    @property
    def size_multiple(self) -> int:
        return self.latent_factor * self.patch_size

    @property
    def default_size(self) -> int:
        return int(self.transformer.config.sample_size) * self.latent_factor

    def layers(self, size: int) -> list[AttentionLayer]:
        """Every block's self-attention with heads, channels and the patch grid at image size ``size``."""
        return block_layers(self.transformer, "attn1", size // self.latent_factor)

    def aliases(self) -> dict[str, str]:
        return block_aliases(self.transformer, "attn1")

    def resolve(self, names: list[str], kind: str = "self") -> list[str]:
        """Module paths for ``blockL`` aliases, block indices or ``transformer_blocks.L.attn1`` paths."""
        return resolve_blocks(self.aliases(), names, "PixArt")

    @classmethod
    def skeleton_layers(
        cls, model: str | os.PathLike, size: int | None, revision: str | None
    ) -> tuple[int, list[AttentionLayer], dict[str, str]]:
        """(size, layers, aliases) of ``model`` read from its configs (no weights loaded; size None: native)."""
        from diffusers import PixArtTransformer2DModel

        return skeleton_blocks(PixArtTransformer2DModel, "attn1", model, size, revision, "PixArt")

    @staticmethod
    def alias_notes(aliases: dict[str, str]) -> list[str]:
        return [f"aliases: block0..block{len(aliases) - 1} = transformer_blocks.L.attn1"]

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

    @torch.no_grad()
    def text_conditioning(self, prompt: str) -> tuple[torch.Tensor, ...]:
        """(cond, cond_mask, uncond, uncond_mask) from the pipeline's ``encode_prompt`` (negative ""); once per
        prompt."""
        if prompt not in self._text:
            self._text[prompt] = tuple(
                self.pipe.encode_prompt(
                    prompt, do_classifier_free_guidance=True, negative_prompt="", device=self.device
                )
            )
        return self._text[prompt]

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

    def run(
        self, sample: torch.Tensor, t: torch.Tensor, layers: list[str], inputs: dict[str, Any], stop_early: bool
    ) -> dict[str, QKV]:
        return capture(
            self.transformer,
            layers,
            stop_early=stop_early,
            what=self.denoiser_name,
            hidden_states=sample,
            timestep=t,
            return_dict=False,
            **inputs,
        )


register_kind(
    KindInfo(
        PIXART,
        "a PixArt-Sigma / PixArt-alpha pipeline (PixArtSigmaPipeline, PixArtAlphaPipeline)",
        PixArtBackbone,
        "diffsim-s-pixart",
        pipelines=PIPELINES,
        denoiser="transformer",
        # the hub's PixArt-alpha configs still say Transformer2DModel (diffusers remaps it by its adaLN-single norm)
        config_rule=lambda t: (
            t.get("_class_name") == "PixArtTransformer2DModel" or t.get("norm_type") == "ada_norm_single"
        ),
    )
)
