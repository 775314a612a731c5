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
from collections import OrderedDict
from typing import Any

import torch

from ..aas import QKV
from ..images import content_hash
from ..models import shared_model
from ..devices import resolve_device, resolve_dtype
from .capture import capture_qkv, run_until_captured
from .identity import model_identity
from .layers import AttentionLayer, alias_table, list_attention_layers, resolve_layer
from .loading import DEFAULT_MODEL, SDComponents, load_components
from .timesteps import check_timestep, step_table, step_to_timestep

logger = logging.getLogger(__name__)

LATENT_CACHE_ITEMS = 4096  # clean latents kept per backbone (64 KB each at 512 px): a sweep encodes once



class StableDiffusionBackbone:
    """Holds the loaded modules; turns pixel batches into per-layer Q/K/V features."""

    weights_loaded = True  # (a LazyStableDiffusion says False until it loads)

    def __init__(self, parts: SDComponents, device: torch.device, dtype: torch.dtype,
                 identity: str | None = None) -> None:
        self.parts = parts
        self.device = device
        self.dtype = dtype
        self.source = parts.source
        #: the weights actually loaded (hub commit, or resolved path + file digest): the feature cache key
        self.identity = identity or model_identity(parts.source)
        self._text: dict[str, torch.Tensor] = {}
        self._noise: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._latents: OrderedDict[tuple[str, int], torch.Tensor] = OrderedDict()
        self.unet_calls = 0  # number of U-Net forward calls (for tests and benchmarks)
        self.images_encoded = 0  # images through the VAE encoder (a latent-cache hit does not count)
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
        key, ident, cfg_ident = cls._shared_key(model, dev, dt, revision, variant, single_file_config)

        def load() -> "StableDiffusionBackbone":
            logger.info("loading %s on %s (%s)", model, dev, dt)
            parts = load_components(model, dtype=dt, device=dev, revision=revision, variant=variant,
                                    single_file_config=single_file_config)
            full = model_identity(model, revision) if ident.endswith("?") else ident  # a Hub id just downloaded
            full += (f"+variant={variant}" if variant else "") + (f"+config={cfg_ident}" if cfg_ident else "")
            logger.debug("model identity (feature cache key): %s", full)
            return cls(parts, dev, dt, full)

        return shared_model(key, load, share)

    @staticmethod
    def _shared_key(model: str | os.PathLike, dev: torch.device, dt: torch.dtype, revision: str | None,
                    variant: str | None, single_file_config: str | None) -> tuple[tuple, str, str | None]:
        ident = model_identity(model, revision)
        cfg_ident = model_identity(single_file_config) if single_file_config else None
        return ("stable-diffusion", ident, str(dev), str(dt), revision, variant, cfg_ident), ident, cfg_ident

    @classmethod
    def find_loaded(cls, model: str | os.PathLike, device: torch.device, dtype: torch.dtype, revision: str | None = None,
               variant: str | None = None, single_file_config: str | None = None) -> "StableDiffusionBackbone | None":
        """The shared backbone for these arguments if it is in memory already (None: not loaded)."""
        from ..models import loaded_models

        key = cls._shared_key(model, device, dtype, revision, variant, single_file_config)[0]
        return shared_model(key, lambda: None) if key in loaded_models() else None  # type: ignore[return-value]

    def clear_caches(self) -> None:
        """Forget cached prompt embeddings, noise and clean latents (benchmarks start each row cold)."""
        self._text.clear()
        self._noise.clear()
        self._latents.clear()

    # ---------------------------------------------------------------- metadata
    @property
    def unet(self) -> Any:
        return self.parts.unet

    @property
    def scheduler(self) -> Any:
        return self.parts.scheduler

    @property
    def latent_factor(self) -> int:
        return 2 ** (len(self.parts.vae.config.block_out_channels) - 1)

    def layers(self, size: int) -> list[AttentionLayer]:
        """Every attention layer with its heads, channels and token grid at image size ``size``."""
        return list_attention_layers(self.unet, size // self.latent_factor)

    def aliases(self) -> dict[str, str]:
        return alias_table(self.unet)

    def resolve(self, names: list[str], kind: str = "self") -> list[str]:
        """Module paths for layer names or aliases (order kept, duplicates dropped)."""
        out: list[str] = []
        for n in names:
            p = resolve_layer(self.unet, n, kind)
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

    def noise(self, seed: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_vae, eps), each (1, C, side, side) float32 on CPU, from one CPU generator seeded ``seed``."""
        key = (seed, side)
        if key not in self._noise:
            c = int(self.parts.vae.config.latent_channels)
            g = torch.Generator("cpu").manual_seed(seed)
            eps_vae = torch.randn((1, c, side, side), generator=g, dtype=torch.float32)
            eps = torch.randn((1, c, side, side), generator=g, dtype=torch.float32)
            self._noise[key] = (eps_vae, eps)
        return self._noise[key]

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, seed: int) -> torch.Tensor:
        """(N, 3, S, S) in [-1, 1] -> clean latents z0 (N, C, S/f, S/f) in float32.

        Latents are kept per image content and seed (bounded LRU), so embedding the same images at
        other timesteps or layers (a sweep, the demo's selectors) does not run the VAE again.
        """
        keys = [(content_hash(p), seed) for p in pixels]
        todo = [i for i, k in enumerate(keys) if k not in self._latents]
        if todo:
            z = self._encode(pixels[todo], seed)
            for i, zi in zip(todo, z):
                self._latents[keys[i]] = zi.cpu()
                while len(self._latents) > LATENT_CACHE_ITEMS:
                    self._latents.popitem(last=False)
        for k in keys:
            self._latents.move_to_end(k)
        return torch.stack([self._latents[k] for k in keys]).to(self.device)

    def _encode(self, pixels: torch.Tensor, seed: int) -> torch.Tensor:
        self.images_encoded += pixels.shape[0]
        vae = self.parts.vae
        x = pixels.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        post = vae.encode(x).latent_dist
        eps_vae, _ = self.noise(seed, post.mean.shape[-1])
        z = post.mean.float() + post.std.float() * eps_vae.to(self.device)
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (z - shift) * float(vae.config.scaling_factor)

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
