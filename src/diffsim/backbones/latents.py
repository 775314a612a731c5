"""What every latent-diffusion backbone shares: the seeded noise, VAE encoding and forward noising.

Noise: ``eps_vae`` then ``eps``, each ``(1, C, side, side)`` float32, from one CPU generator seeded
``seed``, identical for every image (features depend on the image alone: cacheable and symmetric).
On the differentiable path (:meth:`~.latent_diffusion.LatentDiffusionBackbone.extract` with ``grad=True``)
an explicit ``(eps_vae, eps)`` may replace that draw, and :meth:`LatentEncoding.encode_differentiable`
replaces the cached :meth:`LatentEncoding.encode`.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch

from ..images import content_hash

Noise = tuple[torch.Tensor, torch.Tensor]

LATENT_CACHE_ITEMS = 4096  # clean latents kept per backbone (64 KB each at 512 px): a sweep encodes once


class LatentEncoding:
    """Mixin: needs ``self.vae`` (an ``AutoencoderKL``), ``self.scheduler`` and ``self.device``; call
    :meth:`init_latent_state` in ``__init__``."""

    vae: Any
    scheduler: Any
    device: torch.device
    #: the (eps_vae, eps) that replace the seeded draw for the duration of one differentiable extract
    _noise_override: Noise | None = None

    def init_latent_state(self) -> None:
        self._noise: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._latents: OrderedDict[tuple[str, int], torch.Tensor] = OrderedDict()
        self.images_encoded = 0  # images through the VAE encoder (a latent-cache hit does not count)
        self.cache_latents = True  # keep clean latents per image content (see encode)

    def clear_caches(self) -> None:
        """Forget the cached noise and clean latents."""
        self._noise.clear()
        self._latents.clear()

    @property
    def latent_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def noise(self, seed: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_vae, eps), each (1, C, side, side) float32 on CPU, from one CPU generator seeded ``seed``
        (inside a differentiable extract given ``noise=``: that pair, never cached)."""
        if self._noise_override is not None:
            return self._noise_override
        key = (seed, side)
        if key not in self._noise:
            c = int(self.vae.config.latent_channels)
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
        With ``cache_latents = False`` (throughput runs that see each image once) the per-image hash,
        the copy to the CPU and back are skipped.
        """
        if not self.cache_latents:
            return self._encode(pixels, seed)
        keys = [(content_hash(p), seed) for p in pixels]
        todo = [i for i, k in enumerate(keys) if k not in self._latents]
        if todo:
            z = self._encode(pixels[todo], seed)
            for i, zi in zip(todo, z, strict=True):
                self._latents[keys[i]] = zi.cpu()
                while len(self._latents) > LATENT_CACHE_ITEMS:
                    self._latents.popitem(last=False)
        for k in keys:
            self._latents.move_to_end(k)
        return torch.stack([self._latents[k] for k in keys]).to(self.device)

    def _encode(self, pixels: torch.Tensor, seed: int) -> torch.Tensor:
        """The VAE encoder (in its own dtype) and the seeded posterior sample, scaled."""
        self.images_encoded += pixels.shape[0]
        vae = self.vae
        mean, std = self.moments(pixels.to(self.device, vae.dtype).contiguous(memory_format=torch.channels_last))
        eps_vae, _ = self.noise(seed, mean.shape[-1])
        z = mean.float() + std.float() * eps_vae.to(self.device)
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (z - shift) * float(vae.config.scaling_factor)

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE posterior's (mean, std) of pixels ``x``."""
        post = self.vae.encode(x).latent_dist
        return post.mean, post.std

    def encode_differentiable(self, pixels: torch.Tensor, seed: int) -> torch.Tensor:
        """As :meth:`encode`, keeping the autograd graph: no ``no_grad``, no content hash, no latent cache.

        Everything after the VAE runs in ``promote(float32, pixels.dtype)`` (float32 as :meth:`encode`,
        float64 for ``gradcheck``).
        """
        self.images_encoded += pixels.shape[0]
        vae = self.vae
        wd = torch.promote_types(torch.float32, pixels.dtype)
        x = pixels.to(self.device, vae.dtype).contiguous(memory_format=torch.channels_last)
        post = vae.encode(x).latent_dist
        eps_vae, _ = self.noise(seed, post.mean.shape[-1])
        z = post.mean.to(wd) + post.std.to(wd) * eps_vae.to(self.device, wd)
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        # contiguous, as the cached latents (stacked from the latent cache): convolutions round differently
        # on channels_last inputs
        return ((z - shift) * float(vae.config.scaling_factor)).contiguous()

    def model_input(self, z0: torch.Tensor, timestep: int, seed: int) -> torch.Tensor:
        """``scale_model_input(add_noise(z0, eps, T), T)`` with a fresh copy of the model's own scheduler.

        For DDPM-style schedulers (DDIM, PNDM, DDPM) that is ``sqrt(abar_T) z0 + sqrt(1 - abar_T) eps``;
        for sigma schedulers (Euler, SDXL) ``(z0 + sigma_T eps) / sqrt(sigma_T^2 + 1)``: the same process.
        """
        _, eps = self.noise(seed, z0.shape[-1])
        sched = copy.deepcopy(self.scheduler)  # add_noise / scale_model_input may keep a step index
        t = torch.full((z0.shape[0],), timestep, dtype=torch.long, device=z0.device)
        xt = sched.add_noise(z0, eps.to(z0.device).expand_as(z0), t)
        return sched.scale_model_input(xt, t[:1])
