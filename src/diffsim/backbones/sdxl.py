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

from ..aas import QKV
from ..devices import resolve_device, resolve_dtype
from ..errors import ModelNotFoundError
from ..models import shared_model
from .capture import capture
from .detect import SDXL, require_kind
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
from .stable_diffusion import StableDiffusionBackbone, _by_image

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

    kind = SDXL

    def __init__(
        self, pipe: Any, source: str, device: torch.device, dtype: torch.dtype, fixed_vae: bool = False
    ) -> None:
        parts = SDComponents(pipe.vae, pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.scheduler, source)
        prepare_components(parts, dtype, device)
        pipe.text_encoder_2.to(device=device, dtype=dtype).eval().requires_grad_(False)
        if dtype == torch.float16 and not fixed_vae and getattr(pipe.vae.config, "force_upcast", True):
            pipe.vae.to(dtype=torch.float32)  # SDXL's VAE overflows in fp16 (diffusers upcasts it too)
        self.pipe = pipe
        self._pooled: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        super().__init__(parts, device, dtype)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        model: str | os.PathLike = DEFAULT_SDXL,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        revision: str | None = None,
        variant: str | None = None,
        single_file_config: str | None = None,
        vae: str | os.PathLike | None = None,
        share: bool = True,
    ) -> SDXLBackbone:
        """Load (or reuse) an SDXL pipeline: hub id, diffusers folder or single checkpoint."""
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        key = ("sdxl", str(model), str(dev), str(dt), revision, variant, single_file_config, str(vae))

        def load() -> SDXLBackbone:
            require_kind(model, (SDXL,), "the SDXL backbone", revision)
            logger.info("loading SDXL %s on %s (%s)", model, dev, dt)
            pipe = _load_pipeline(model, dt, revision, variant, single_file_config, vae)
            return cls(pipe, str(model), dev, dt, fixed_vae=vae is not None)

        return shared_model(key, load, share)

    # ---------------------------------------------------------------- metadata
    default_size = 1024
    per_transformer = True  # aliases name every transformer block too: up0.a2.t9 (depth 2 and 10)
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
    @torch.no_grad()
    def extract_latents(
        self,
        z0: torch.Tensor,
        layers: list[str],
        timestep: int,
        prompt: str,
        seed: int,
        single_branch: bool = False,
        stop_early: bool = True,
        conditioning_size: int | None = None,
    ) -> dict[str, QKV]:
        """Q/K/V at ``layers`` from clean latents; each ``(N, branches, heads, T, D)``."""
        n = z0.shape[0]
        xt = self.model_input(z0, timestep, seed).to(self.dtype)
        cond, uncond, pooled, uncond_pooled = self.text_conditioning(prompt)
        side = z0.shape[-1] * self.latent_factor
        ids = self.time_ids(z0.shape[-2] * self.latent_factor, side, conditioning_size)
        if single_branch:
            branches, emb, text, sample = 1, cond.expand(n, -1, -1), pooled.expand(n, -1), xt
        else:
            branches = 2
            emb = torch.cat([uncond.expand(n, -1, -1), cond.expand(n, -1, -1)])
            text = torch.cat([uncond_pooled.expand(n, -1), pooled.expand(n, -1)])
            sample = torch.cat([xt, xt])
        added = {"text_embeds": text, "time_ids": ids.expand(sample.shape[0], -1)}
        t = torch.full((sample.shape[0],), timestep, dtype=torch.long, device=self.device)
        self.unet_calls += 1
        store = capture(
            self.unet,
            layers,
            sample,
            t,
            stop_early=stop_early,
            encoder_hidden_states=emb,
            added_cond_kwargs=added,
            return_dict=False,
        )
        return {p: _by_image(store[p], branches, n, n) for p in layers}

    @torch.no_grad()
    def extract(
        self,
        pixels: torch.Tensor,
        layers: list[str],
        timestep: int,
        prompt: str,
        seed: int,
        single_branch: bool = False,
        stop_early: bool = True,
        conditioning_size: int | None = None,
    ) -> dict[str, QKV]:
        """Q/K/V at module paths ``layers`` for pixels (N, 3, H, W) in [-1, 1]."""
        z0 = self.encode(pixels, seed)
        return self.extract_latents(z0, layers, timestep, prompt, seed, single_branch, stop_early, conditioning_size)
