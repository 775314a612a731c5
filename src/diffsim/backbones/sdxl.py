"""Stable Diffusion XL (any ``StableDiffusionXLPipeline``) as an attention-feature extractor.

Same protocol as :mod:`.stable_diffusion` (shared seeded noise, guidance pair, Q/K/V at the chosen
``attn1``, stop after the last one) with SDXL's conditioning taken from diffusers' own pipeline:

* text: ``StableDiffusionXLPipeline.encode_prompt`` (both text encoders' penultimate hidden states
  concatenated; the pooled embedding of the second); the unconditional branch is all zeros when the
  pipeline's ``force_zeros_for_empty_prompt`` is set (SDXL base), else the encoded empty prompt;
* micro-conditioning: ``_get_add_time_ids(original_size, (0, 0), target_size)`` with both sizes the
  real input size (``conditioning_size=1024`` reproduces the authors' fixed 1024 x 1024);
* noise: ``scheduler.add_noise(z0, eps, T)`` then ``scheduler.scale_model_input`` at the same T (for
  the Euler scheduler: ``(z0 + sigma_T eps) / sqrt(sigma_T^2 + 1)``, i.e. the DDPM forward process). The
  authors' code multiplies z0 by ``init_noise_sigma`` (about 14.6) first; that is a bug, not done here;
* the VAE runs in float32 when the model is float16 and the VAE's ``force_upcast`` is set (SDXL's VAE
  overflows in fp16), unless a fixed VAE (e.g. ``madebyollin/sdxl-vae-fp16-fix``) is passed as ``vae=``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelNotFoundError
from ..models import shared_model
from .detect import require_kind
from .kinds import KindInfo, register_kind
from .latent_diffusion import guidance_pair
from .latents import LatentEncoding
from .loading import (
    SDComponents,
    _first_line,
    classify,
    load_cache_first,
    prepare_components,
    quiet_loading,
    resolve_source,
)
from .protocol import TextCondition
from .spec import LoadSpec
from .stable_diffusion import StableDiffusionBackbone

logger = logging.getLogger(__name__)

DEFAULT_SDXL = "stabilityai/stable-diffusion-xl-base-1.0"


def _load_pipeline(
    model: str | os.PathLike,
    dtype: torch.dtype,
    revision: str | None,
    variant: str | None,
    single_file_config: str | None,
    vae: str | os.PathLike | None,
) -> Any:
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline

    where = classify(model)
    text = str(Path(str(model)).expanduser()) if where != "hub" else str(model)
    extra: dict[str, Any] = {"torch_dtype": dtype}
    if vae is not None:
        vsrc, vlocal = resolve_source(vae, "VAE", "config.json and the weights of an AutoencoderKL")
        extra["vae"] = load_cache_first(
            lambda local_files_only=False: AutoencoderKL.from_pretrained(
                vsrc, torch_dtype=dtype, local_files_only=local_files_only
            ),
            vsrc,
            vlocal,
            "VAE",
            "vae='/path/to/AutoencoderKL-folder'",
            cli_fix="a local AutoencoderKL folder with --set vae=PATH",
        )
    if where == "file":
        kw = dict(extra, config=single_file_config) if single_file_config else extra
        try:
            with quiet_loading():
                return StableDiffusionXLPipeline.from_single_file(text, **kw)
        except Exception as exc:
            raise ModelNotFoundError(
                f"could not load the SDXL single-file checkpoint {text}: {_first_line(exc)}. "
                "A single file needs its pipeline config: have it in the HF cache, or pass "
                "single_file_config=<local SDXL diffusers folder>"
            ) from exc
    kw = dict(extra, variant=variant, **({"revision": revision} if revision else {}))
    return load_cache_first(
        lambda local_files_only=False: StableDiffusionXLPipeline.from_pretrained(
            text, local_files_only=local_files_only, **kw
        ),
        text,
        where == "folder",
        "SDXL model",
        "model='/path/to/sdxl-folder' or a single .safetensors file",
        cli_fix="a local StableDiffusionXLPipeline folder or a single .safetensors file with --model PATH",
        local_hint=" (expected a StableDiffusionXLPipeline folder: model_index.json, unet/, vae/, text_encoder/, "
        "text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/)",
    )


class SDXLBackbone(StableDiffusionBackbone):
    """Holds an SDXL pipeline's modules; turns pixel batches into per-layer Q/K/V features."""

    kind = "sdxl"

    def __init__(
        self,
        pipe: Any,
        source: str,
        device: torch.device,
        dtype: torch.dtype,
        fixed_vae: bool = False,
        identity: str | None = None,
    ) -> None:
        parts = SDComponents(pipe.vae, pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.scheduler, source)
        prepare_components(parts, dtype, device)
        pipe.text_encoder_2.to(device=device, dtype=dtype).eval().requires_grad_(False)
        if dtype == torch.float16 and not fixed_vae and getattr(pipe.vae.config, "force_upcast", True):
            pipe.vae.to(dtype=torch.float32)  # SDXL's VAE overflows in fp16 (diffusers upcasts it too)
        self.pipe = pipe
        self._pooled: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        super().__init__(parts, device, dtype, identity)

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike = DEFAULT_SDXL, share: bool = True, **spec: Any) -> Any:
        """Load (or reuse) an SDXL pipeline: hub id, diffusers folder or single checkpoint; ``spec``: the
        :class:`LoadSpec` fields (device, dtype, revision, variant, single_file_config, vae)."""
        return cls.load(LoadSpec(model, **spec), share)

    @classmethod
    def load(cls, spec: LoadSpec, share: bool = True) -> SDXLBackbone:
        """Load (or reuse) the SDXL pipeline ``spec`` names (the speed options do not apply)."""
        dev, dt = spec.torch_device, spec.torch_dtype
        spec = spec.replace(ip_adapter=None)

        def load() -> SDXLBackbone:
            require_kind(spec.model, ("sdxl",), "the SDXL backbone", spec.revision)
            logger.info("loading SDXL %s on %s (%s)", spec.model, dev, dt)
            pipe = _load_pipeline(spec.model, dt, spec.revision, spec.variant, spec.single_file_config, spec.vae)
            return cls(pipe, str(spec.model), dev, dt, fixed_vae=spec.vae is not None, identity=spec.identity())

        return shared_model(spec.key("sdxl"), load, share)

    # ---------------------------------------------------------------- metadata
    default_size = 1024
    per_transformer = True  # aliases name every transformer block too: up0.a2.t9 (depth 2 and 10)
    explicit = False  # extraction on the hook path (the explicit U-Net serves the differentiable path)
    # the VAE in its own dtype (float32 under a float16 U-Net), and Euler's add_noise + scale_model_input
    _encode = LatentEncoding._encode
    model_input = LatentEncoding.model_input

    # ----------------------------------------------------------------- inputs
    @torch.no_grad()
    def text_conditioning(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cond, uncond, pooled, uncond_pooled) from the pipeline's ``encode_prompt``; once per prompt."""
        if prompt not in self._pooled:
            cond, uncond, pooled, uncond_pooled = self.pipe.encode_prompt(
                prompt, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=True
            )
            self._pooled[prompt] = (cond, uncond, pooled, uncond_pooled)
        return self._pooled[prompt]

    def time_ids(self, height: int, width: int, conditioning_size: int | None = None) -> torch.Tensor:
        """SDXL's added time ids (original size, crop (0, 0), target size), (1, 6)."""
        size = (height, width) if conditioning_size is None else (conditioning_size, conditioning_size)
        proj = int(self.pipe.text_encoder_2.config.projection_dim)
        return self.pipe._get_add_time_ids(size, (0, 0), size, dtype=self.dtype, text_encoder_projection_dim=proj).to(
            self.device
        )

    # --------------------------------------------------------------- features
    def conditioning(
        self, condition: TextCondition, n: int, branches: int, latents: torch.Tensor, pixels: torch.Tensor | None
    ) -> dict[str, Any]:
        cond, uncond, pooled, uncond_pooled = self.text_conditioning(condition.prompt)
        f = self.latent_factor
        ids = self.time_ids(latents.shape[-2] * f, latents.shape[-1] * f, condition.size)
        text = guidance_pair(pooled, uncond_pooled, n, branches)
        return {
            "encoder_hidden_states": guidance_pair(cond, uncond, n, branches),
            "added_cond_kwargs": {"text_embeds": text, "time_ids": ids.expand(text.shape[0], -1)},
        }

    @classmethod
    def unet_skeleton(cls, model: str | os.PathLike, revision: str | None) -> tuple[Any, int]:
        if classify(model) != "file":
            return super().unet_skeleton(model, revision)
        from diffusers import StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline.from_single_file(str(model))
        return pipe.unet, 2 ** (len(pipe.vae.config.block_out_channels) - 1)

    @staticmethod
    def alias_notes(aliases: dict[str, str]) -> list[str]:
        return [
            *StableDiffusionBackbone.alias_notes(aliases),
            "every transformer block also has an alias <block>.a<attention>.t<transformer> (e.g. "
            "up0.a2.t9 = up_blocks.0.attentions.2.transformer_blocks.9.attn1)",
        ]


register_kind(
    KindInfo(
        "sdxl",
        "a Stable Diffusion XL pipeline (StableDiffusionXLPipeline)",
        SDXLBackbone,
        "diffsim-s-sdxl",
        pipelines=("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline"),
        config_rule=lambda unet: unet.get("addition_embed_type") == "text_time",
        file_keys=("xl_base",),
    )
)
register_kind(
    KindInfo(
        "sdxl-refiner",
        "a Stable Diffusion XL refiner (no first text encoder: not supported)",
        file_keys=("xl_refiner",),
    )
)
