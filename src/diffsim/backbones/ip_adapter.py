"""DiffSim-C's backbone: Stable Diffusion 1.5 with IP-Adapter Plus (paper Eq. 11, Figure 2).

The adapter is loaded with diffusers' own ``load_ip_adapter`` (``h94/IP-Adapter`` layout:
``models/ip-adapter-plus_sd15.safetensors`` + ``models/image_encoder``) and its scale set with
``set_ip_adapter_scale`` (paper: 0.5). For each image X, one U-Net pass runs on X's noisy latent (the
same shared seeded noise as DiffSim-S) with the adapter fed X itself; at the chosen cross-attention
module (``attn2``):

* Q = ``to_q`` of the module input (the block's ``norm2`` output), split into heads;
* K, V = that module's IP projections ``to_k_ip[0]`` / ``to_v_ip[0]`` of X's 16 IP tokens (the Plus
  resampler's output for X's CLIP image features ``hidden_states[-2]``).

The guidance pair is [unconditional, prompt]: the unconditional branch gets the empty prompt and the
IP tokens of an all-zero image tensor, as diffusers' ``encode_image`` does. Text keys never enter.

Differences from the authors' code: theirs crashes on current diffusers (its pre-hook reads the
encoder states positionally); here the hook takes them by keyword. The image encoder sees the same
square ``size`` x ``size`` image as the VAE (then the pipeline's CLIP processor: resize to 224, centre
crop, CLIP normalisation), so features depend on the preprocessed pixels alone (cacheable); the
authors fed the original image to the CLIP processor (same result for square inputs up to resampling).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from ..aas import QKV
from ..devices import resolve_device, resolve_dtype
from ..errors import ConfigError, ModelNotFoundError
from ..models import shared_model
from .capture import capture
from .detect import SD, require_kind
from .loading import DEFAULT_MODEL, diffusers_errors_only, load_cache_first, load_components, resolve_source
from .stable_diffusion import StableDiffusionBackbone, _by_image
from .unet_forward import _heads

logger = logging.getLogger(__name__)

DEFAULT_IP_ADAPTER = "h94/IP-Adapter"
IP_SUBFOLDER = "models"
IP_WEIGHTS = "ip-adapter-plus_sd15.safetensors"
IP_IMAGE_ENCODER = "image_encoder"


def ip_cross_qkv(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> QKV:
    """Q from the attn2 input; K/V from the first IP-Adapter's projections of the IP tokens."""
    hidden = args[0] if args else kwargs["hidden_states"]
    context = kwargs.get("encoder_hidden_states")
    if context is None and len(args) > 1:
        context = args[1]
    proc: Any = module.processor
    if not isinstance(context, tuple) or not hasattr(proc, "to_k_ip"):
        raise RuntimeError(
            "the hooked cross-attention got no IP-Adapter tokens: is the adapter loaded and the layer an attn2?"
        )
    ip = context[1][0]
    ip = ip.reshape(ip.shape[0], -1, ip.shape[-1])  # (B, images per adapter * 16, C)
    attn: Any = module
    q = _heads(attn.to_q(hidden), attn.heads)
    return QKV(q, _heads(proc.to_k_ip[0](ip), attn.heads), _heads(proc.to_v_ip[0](ip), attn.heads))


def _check_ip_folder(path: Path, subfolder: str, weight_name: str, image_encoder: str) -> None:
    missing = [
        x
        for x in (f"{subfolder}/{weight_name}", f"{subfolder}/{image_encoder}/config.json")
        if not (path / x).is_file()
    ]
    if missing:
        raise ModelNotFoundError(
            f"{path} is not an IP-Adapter folder in the h94/IP-Adapter layout: missing "
            f"{', '.join(missing)} (expected {subfolder}/{weight_name} and "
            f"{subfolder}/{image_encoder}/ with a CLIPVisionModelWithProjection)"
        )


class IPAdapterBackbone(StableDiffusionBackbone):
    """SD 1.x with an IP-Adapter Plus loaded into its U-Net; Q and IP K/V at cross-attention layers."""

    kind = "sd+ip-adapter"

    def __init__(self, parts: Any, pipe: Any, ip_source: str, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(parts, device, dtype)
        self.pipe = pipe
        self.ip_source = ip_source
        self.source = f"{parts.source}+{ip_source}"
        self._zero_tokens: torch.Tensor | None = None

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        model: str | os.PathLike = DEFAULT_MODEL,
        ip_adapter: str | os.PathLike = DEFAULT_IP_ADAPTER,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        revision: str | None = None,
        variant: str | None = None,
        single_file_config: str | None = None,
        subfolder: str = IP_SUBFOLDER,
        weight_name: str = IP_WEIGHTS,
        image_encoder_folder: str = IP_IMAGE_ENCODER,
        share: bool = True,
    ) -> IPAdapterBackbone:
        """Load SD 1.x (its own copy: the adapter changes the U-Net) and the IP-Adapter Plus into it."""
        from diffusers import StableDiffusionPipeline

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        key = (
            "sd+ip-adapter",
            str(model),
            str(ip_adapter),
            str(dev),
            str(dt),
            revision,
            variant,
            single_file_config,
            subfolder,
            weight_name,
            image_encoder_folder,
        )

        def load() -> IPAdapterBackbone:
            require_kind(model, (SD,), "DiffSim-C (SD 1.5 + IP-Adapter Plus)", revision)
            src, local = resolve_source(
                ip_adapter, "IP-Adapter", f"{subfolder}/{weight_name} and {subfolder}/{image_encoder_folder}/"
            )
            if local:
                _check_ip_folder(Path(src), subfolder, weight_name, image_encoder_folder)
            parts = load_components(
                model, dtype=dt, device=dev, revision=revision, variant=variant, single_file_config=single_file_config
            )
            pipe: Any = StableDiffusionPipeline(
                vae=parts.vae,
                text_encoder=parts.text_encoder,
                tokenizer=parts.tokenizer,
                unet=parts.unet,
                scheduler=parts.scheduler,
                safety_checker=None,
                feature_extractor=None,
                image_encoder=None,
                requires_safety_checker=False,
            )

            def attempt(local_files_only: bool = False) -> None:
                with diffusers_errors_only():
                    pipe.load_ip_adapter(
                        src,
                        subfolder=subfolder,
                        weight_name=weight_name,
                        image_encoder_folder=image_encoder_folder,
                        local_files_only=local_files_only,
                    )

            load_cache_first(
                attempt,
                src,
                local,
                "IP-Adapter",
                "ip_adapter='/path/to/IP-Adapter' (the h94 layout)",
                local_hint=f" (expected {subfolder}/{weight_name})",
                cli_fix="a local folder in the h94/IP-Adapter layout with --set ip_adapter=PATH",
            )
            if not hasattr(parts.unet, "encoder_hid_proj") or parts.unet.encoder_hid_proj is None:
                raise ModelNotFoundError(f"{src}: {weight_name} did not load an IP-Adapter into the U-Net")
            pipe.image_encoder.to(device=dev, dtype=dt).eval().requires_grad_(False)
            parts.unet.eval().requires_grad_(False)
            return cls(parts, pipe, str(ip_adapter), dev, dt)

        return shared_model(key, load, share)

    # ----------------------------------------------------------------- inputs
    def set_scale(self, scale: float) -> None:
        """The adapter's weight in every attn2 (``set_ip_adapter_scale``)."""
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale < 0:
            raise ConfigError(f"IP-Adapter scale must be a number >= 0; got {scale!r}")
        self.pipe.set_ip_adapter_scale(float(scale))

    @torch.no_grad()
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """CLIP image features ``hidden_states[-2]`` of each image, (N, tokens, C), via the pipeline's processor."""
        arr = ((pixels.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        images = [Image.fromarray(np.ascontiguousarray(a.permute(1, 2, 0).numpy())) for a in arr]
        enc = self.pipe.image_encoder
        px = self.pipe.feature_extractor(images, return_tensors="pt").pixel_values.to(self.device, enc.dtype)
        if self._zero_tokens is None:  # diffusers' unconditional image: an all-zero (normalised) tensor
            self._zero_tokens = enc(torch.zeros_like(px[:1]), output_hidden_states=True).hidden_states[-2]
        return enc(px, output_hidden_states=True).hidden_states[-2]

    # --------------------------------------------------------------- features
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
        scale: float = 0.5,
    ) -> dict[str, QKV]:
        """Q and IP K/V at the attn2 paths ``layers``: Q ``(N, branches, heads, T, D)``, K/V ``(..., 16, D)``."""
        self.set_scale(scale)
        n = pixels.shape[0]
        z0 = self.encode(pixels, seed)
        xt = self.add_noise(z0, timestep, seed).to(self.dtype)
        feats = self.image_features(pixels)
        cond = self.prompt_embedding(prompt)
        if single_branch:
            branches, emb, sample, img = 1, cond.expand(n, -1, -1), xt, feats
        else:
            branches, sample = 2, torch.cat([xt, xt])
            emb = torch.cat([self.prompt_embedding("").expand(n, -1, -1), cond.expand(n, -1, -1)])
            zero = self._zero_tokens
            assert zero is not None  # set by image_features
            img = torch.cat([zero.expand(n, -1, -1), feats])
        added = {"image_embeds": [img[:, None]]}  # one IP image per sample
        t = torch.full((sample.shape[0],), timestep, dtype=torch.long, device=self.device)
        self.unet_calls += 1
        store = capture(
            self.unet,
            layers,
            sample,
            t,
            stop_early=stop_early,
            project=ip_cross_qkv,
            encoder_hidden_states=emb,
            added_cond_kwargs=added,
            return_dict=False,
        )
        return {p: _by_image(store[p], branches, n, n) for p in layers}

    def extract_latents(self, *args: Any, **kwargs: Any) -> dict[str, QKV]:
        raise NotImplementedError("DiffSim-C needs the pixels (the adapter sees the image): use extract()")
