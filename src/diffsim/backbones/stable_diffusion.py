"""Stable Diffusion 1.x / 2.x (any ``UNet2DConditionModel`` pipeline) as an attention-feature extractor.

For a batch of images at timestep T the extractor

1. encodes each image with the VAE: ``z0 = scaling_factor * (mean + std * eps_vae)``;
2. noises it: ``x_t = scheduler.add_noise(z0, eps, T)``, where ``eps_vae`` then ``eps`` are drawn from
   ``torch.Generator("cpu").manual_seed(seed)`` in float32, identical for every image (so features
   depend on the image alone: cacheable and symmetric);
3. runs the U-Net on the guidance pair [unconditional "", prompt] (or the prompt branch alone) and
   captures Q/K/V at the requested attention layers, stopping right after the last one.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ..aas import QKV
from ..models import shared_model
from ..devices import resolve_device, resolve_dtype
from .capture import capture_qkv, run_until_captured
from .latents import LatentEncoding
from .layers import AttentionLayer, alias_table, list_attention_layers, resolve_layer
from .loading import DEFAULT_MODEL, SDComponents, load_components
from .timesteps import check_timestep, step_table, step_to_timestep

logger = logging.getLogger(__name__)

class StableDiffusionBackbone(LatentEncoding):
    """Holds the loaded modules; turns pixel batches into per-layer Q/K/V features."""

    kind = "sd"
    default_size = 512  # the paper's setting for SD 1.x (and this library's default for SD 2.x)
    per_transformer = False  # aliases for every transformer block (SDXL)

    def __init__(self, parts: SDComponents, device: torch.device, dtype: torch.dtype) -> None:
        self.parts = parts
        self.device = device
        self.dtype = dtype
        self.source = parts.source
        self._text: dict[str, torch.Tensor] = {}
        self.init_latent_state()
        self.unet_calls = 0  # number of U-Net forward calls (for tests and benchmarks)
        parts.vae.to(memory_format=torch.channels_last)  # ~25% faster convolutions on CPU

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, model: str | os.PathLike = DEFAULT_MODEL, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, revision: str | None = None,
                        variant: str | None = None, single_file_config: str | None = None,
                        share: bool = True) -> "StableDiffusionBackbone":
        """Load (or reuse, with ``share=True``) a backbone for ``model`` on ``device`` in ``dtype``."""
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        key = ("stable-diffusion", str(model), str(dev), str(dt), revision, variant, single_file_config)

        def load() -> "StableDiffusionBackbone":
            logger.info("loading %s on %s (%s)", model, dev, dt)
            parts = load_components(model, dtype=dt, device=dev, revision=revision, variant=variant,
                                    single_file_config=single_file_config)
            return cls(parts, dev, dt)

        return shared_model(key, load, share)

    def clear_caches(self) -> None:
        """Forget cached prompt embeddings, noise and clean latents (benchmarks start each row cold)."""
        self._text.clear()
        super().clear_caches()

    # ---------------------------------------------------------------- metadata
    @property
    def unet(self) -> Any:
        return self.parts.unet

    @property
    def scheduler(self) -> Any:
        return self.parts.scheduler

    @property
    def vae(self) -> Any:
        return self.parts.vae

    def layers(self, size: int) -> list[AttentionLayer]:
        """Every attention layer with its heads, channels and token grid at image size ``size``."""
        return list_attention_layers(self.unet, size // self.latent_factor, self.per_transformer)

    def aliases(self) -> dict[str, str]:
        return alias_table(self.unet, self.per_transformer)

    def resolve(self, names: list[str], kind: str = "self") -> list[str]:
        """Module paths for layer names or aliases (order kept, duplicates dropped)."""
        out: list[str] = []
        for n in names:
            p = resolve_layer(self.unet, n, kind, self.per_transformer)
            if p not in out:
                out.append(p)
        return out

    def timestep(self, timestep: int | None = None, step: int | None = None) -> int:
        """The actual timestep T from either ``timestep`` or the paper's ``step`` index."""
        if timestep is not None and step is not None:
            from ..errors import ConfigError

            raise ConfigError("give either timestep (the actual T) or step (the paper's index), not both")
        if step is not None:
            return step_to_timestep(self.scheduler, step)
        if timestep is None:
            raise ValueError("timestep or step is required")
        return check_timestep(self.scheduler, timestep)

    def step_table(self) -> list[int]:
        return step_table(self.scheduler)

    # ----------------------------------------------------------------- inputs
    @torch.no_grad()
    def prompt_embedding(self, prompt: str) -> torch.Tensor:
        """Last hidden state of the text encoder for ``prompt``, (1, 77, D); computed once per prompt."""
        if prompt not in self._text:
            tok = self.parts.tokenizer
            ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids.to(self.device)
            self._text[prompt] = self.parts.text_encoder(ids)[0]
        return self._text[prompt]

    def add_noise(self, z0: torch.Tensor, timestep: int, seed: int) -> torch.Tensor:
        """Forward diffusion to timestep T in float32 with the model's own scheduler."""
        _, eps = self.noise(seed, z0.shape[-1])
        t = torch.full((z0.shape[0],), timestep, dtype=torch.long, device=z0.device)
        return self.scheduler.add_noise(z0, eps.to(z0.device).expand_as(z0), t)

    # --------------------------------------------------------------- features
    @torch.no_grad()
    def extract(self, pixels: torch.Tensor, layers: list[str], timestep: int, prompt: str, seed: int,
                single_branch: bool = False, stop_early: bool = True) -> dict[str, QKV]:
        """Q/K/V at module paths ``layers``: each ``(N, branches, heads, T, D)`` in the model dtype.

        ``branches`` is 2 ([unconditional, prompt]) or 1 (prompt only, ``single_branch=True``).
        """
        z0 = self.encode(pixels, seed)
        return self.extract_latents(z0, layers, timestep, prompt, seed, single_branch, stop_early)

    @torch.no_grad()
    def extract_latents(self, z0: torch.Tensor, layers: list[str], timestep: int, prompt: str, seed: int,
                        single_branch: bool = False, stop_early: bool = True) -> dict[str, QKV]:
        """As :meth:`extract`, from clean latents (lets a sweep encode once for many timesteps)."""
        n = z0.shape[0]
        xt = self.add_noise(z0, timestep, seed).to(self.dtype)
        cond = self.prompt_embedding(prompt)
        if single_branch:
            branches, emb, sample = 1, cond.expand(n, -1, -1), xt
        else:
            uncond = self.prompt_embedding("")
            branches = 2
            emb = torch.cat([uncond.expand(n, -1, -1), cond.expand(n, -1, -1)])
            sample = torch.cat([xt, xt])
        t = torch.full((sample.shape[0],), timestep, dtype=torch.long, device=self.device)
        with capture_qkv(self.unet, layers, stop_early=stop_early) as store:
            self.unet_calls += 1
            run_until_captured(self.unet, sample, t, encoder_hidden_states=emb, return_dict=False)
        missing = [p for p in layers if p not in store]
        if missing:
            raise RuntimeError(f"layers never ran in the U-Net forward: {missing}")
        return {p: _by_image(store[p], branches, n) for p in layers}


def _by_image(qkv: QKV, branches: int, n: int) -> QKV:
    """(branches*N, H, T, D) in [branch-major] order -> (N, branches, H, T, D)."""

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(branches, n, *x.shape[1:]).transpose(0, 1).contiguous()

    return QKV(split(qkv.q), split(qkv.k), split(qkv.v))
