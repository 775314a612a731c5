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

The image encoder sees what the pipeline's CLIP processor makes of each image (shortest side to 224,
bicubic, centre crop, CLIP normalisation). Given packed views (:class:`~diffsim.preprocess.WithView`:
the VAE's square and :meth:`IPAdapterBackbone.clip_view` of the ORIGINAL image, as the authors and
diffusers' ``ip_adapter_image`` feed it), the processor saw the original; given plain (N, 3, S, S)
pixels, it runs on those (the squashed square: DiffSim-C's ``clip_input="square"``).

Differences from the authors' code: theirs crashes on current diffusers (its pre-hook reads the
encoder states positionally); here the hook takes them by keyword.
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
from ..errors import ConfigError, ModelNotFoundError
from ..models import shared_model
from ..preprocess import ProcessorView, split_views
from .detect import require_kind
from .kinds import KindInfo, register_kind
from .latent_diffusion import LatentDiffusionBackbone, guidance_pair
from .loading import DEFAULT_MODEL, diffusers_errors_only, load_cache_first, load_components, resolve_source
from .protocol import TextCondition
from .spec import LoadSpec
from .stable_diffusion import StableDiffusionBackbone
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
    explicit = False  # the hook path: Q is read against the IP K/V (:meth:`project`)

    def __init__(
        self,
        parts: Any,
        pipe: Any,
        ip_source: str,
        device: torch.device,
        dtype: torch.dtype,
        identity: str | None = None,
    ) -> None:
        super().__init__(parts, device, dtype, identity)
        self.pipe = pipe
        self.ip_source = ip_source
        self.source = f"{parts.source}+{ip_source}"
        self._zero_tokens: torch.Tensor | None = None

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike = DEFAULT_MODEL,
        share: bool = True,
        *,
        ip_adapter: str | os.PathLike = DEFAULT_IP_ADAPTER,
        **spec: Any,
    ) -> Any:
        """Load SD 1.x (its own copy: the adapter changes the U-Net) and the IP-Adapter Plus into it;
        ``spec``: the other :class:`LoadSpec` fields (device, dtype, ip_subfolder, ip_weight_name, ...)."""
        return cls.load(LoadSpec(model, ip_adapter=ip_adapter, **spec), share)

    @classmethod
    def load(cls, spec: LoadSpec, share: bool = True) -> IPAdapterBackbone:
        """Load (or reuse) the SD + IP-Adapter backbone ``spec`` names (shared by the identity of the SD
        weights, the adapter weights and its image encoder)."""
        from diffusers import StableDiffusionPipeline

        if spec.ip_adapter is None:
            spec = spec.replace(ip_adapter=DEFAULT_IP_ADAPTER)
        dev, dt = spec.torch_device, spec.torch_dtype
        model, revision, variant = spec.model, spec.revision, spec.variant
        ip_adapter, subfolder = str(spec.ip_adapter), spec.ip_subfolder
        weight_name, image_encoder_folder = spec.ip_weight_name, spec.ip_image_encoder
        single_file_config = spec.single_file_config

        def load() -> IPAdapterBackbone:
            require_kind(model, ("sd",), "DiffSim-C (SD 1.5 + IP-Adapter Plus)", revision)
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
            return cls(parts, pipe, str(ip_adapter), dev, dt, spec.identity())

        return shared_model(
            spec.replace(compile=False, channels_last=False, inference_mode=False).key("sd+ip"), load, share
        )

    # ----------------------------------------------------------------- inputs
    def set_scale(self, scale: float) -> None:
        """The adapter's weight in every attn2 (``set_ip_adapter_scale``)."""
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale < 0:
            raise ConfigError(f"IP-Adapter scale must be a number >= 0; got {scale!r}")
        self.pipe.set_ip_adapter_scale(float(scale))

    def clip_view(self) -> ProcessorView:
        """The picklable step that turns an original image into the image encoder's input (3, C, C)."""
        return ProcessorView(self.pipe.feature_extractor)

    @property
    def clip_side(self) -> int:
        """The side of the image encoder's input (the processor's crop size; 224 for the real encoder)."""
        crop = self.pipe.feature_extractor.crop_size  # a dict, or transformers 5's SizeDict
        return int(crop if isinstance(crop, int) else crop["height"])

    def split(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Plain pixels (N, 3, S, S) -> (pixels, None); packed views (N, 3, S*S + C*C) -> (the VAE's square,
        the CLIP processor's output for the original image)."""
        if pixels.dim() == 3:
            return split_views(pixels, self.clip_side)
        return pixels, None

    def encode(self, pixels: torch.Tensor, seed: int) -> torch.Tensor:
        """As the base, for plain pixels (N, 3, S, S) or packed views (see :meth:`split`): the VAE encodes the
        square (``extract`` hands the packed views on to :meth:`conditioning`, whose image encoder sees the view)."""
        return super().encode(self.split(pixels)[0], seed)

    @torch.no_grad()
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """CLIP image features ``hidden_states[-2]`` of each image, (N, tokens, C): of the processed original
        when ``pixels`` are packed views, else of the (N, 3, S, S) pixels through the pipeline's processor."""
        square, view = self.split(pixels)
        enc = self.pipe.image_encoder
        if view is not None:
            px = view.to(self.device, enc.dtype)
        else:
            arr = ((square.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            images = [Image.fromarray(np.ascontiguousarray(a.permute(1, 2, 0).numpy())) for a in arr]
            px = self.pipe.feature_extractor(images, return_tensors="pt").pixel_values.to(self.device, enc.dtype)
        if self._zero_tokens is None:  # diffusers' unconditional image: an all-zero (normalised) tensor
            self._zero_tokens = enc(torch.zeros_like(px[:1]), output_hidden_states=True).hidden_states[-2]
        return enc(px, output_hidden_states=True).hidden_states[-2]

    # --------------------------------------------------------------- features
    def project(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> QKV:
        return ip_cross_qkv(module, args, kwargs)

    def conditioning(
        self, condition: TextCondition, n: int, branches: int, latents: torch.Tensor, pixels: torch.Tensor | None
    ) -> dict[str, Any]:
        """Text states as SD, and the IP tokens of each image (unconditional: an all-zero image's)."""
        self._start(condition, pixels)
        assert pixels is not None  # checked by _start
        feats = self.image_features(pixels)
        zero = self._zero_tokens
        assert zero is not None  # set by image_features
        return self._inputs(condition, n, branches, feats, zero)

    def _start(self, condition: TextCondition, pixels: torch.Tensor | None) -> None:
        if pixels is None:
            raise ConfigError("the IP-Adapter conditions on the image itself: pass pixels= with the latents")
        self.set_scale(condition.ip_scale)

    def _inputs(
        self, condition: TextCondition, n: int, branches: int, feats: torch.Tensor, zero: torch.Tensor
    ) -> dict[str, Any]:
        """The U-Net's inputs: the text states and the IP tokens, each as the guidance pair."""
        cond = self.prompt_embedding(condition.prompt)
        uncond = cond if branches == 1 else self.prompt_embedding("")
        return {
            "encoder_hidden_states": guidance_pair(cond, uncond, n, branches),
            "added_cond_kwargs": {"image_embeds": [guidance_pair(feats, zero, n, branches)[:, None]]},  # one IP image
        }

    # ------------------------------------------------------ differentiable path
    def run_differentiable(
        self,
        sample: torch.Tensor,
        t: torch.Tensor,
        layers: list[str],
        inputs: dict[str, Any],
        stop_early: bool,
        checkpoint: bool,
    ) -> dict[str, QKV]:
        """The hook pass keeping the graph (no gradient checkpointing: Q is read against the IP K/V)."""
        return LatentDiffusionBackbone.run_differentiable(self, sample, t, layers, inputs, stop_early, checkpoint)

    def conditioning_differentiable(
        self, condition: TextCondition, n: int, branches: int, latents: torch.Tensor, pixels: torch.Tensor | None
    ) -> dict[str, Any]:
        """As :meth:`conditioning`, the IP tokens differentiable in the pixels: the image encoder gets them
        through an on-device resize / centre crop / normalisation (:func:`diffsim.functional.resize.clip_pixels`)
        instead of the Pillow processor on uint8; nothing is cached."""
        from ..functional.resize import clip_pixels

        self._start(condition, pixels)
        assert pixels is not None  # checked by _start
        enc = self.pipe.image_encoder
        px = clip_pixels(self.pipe.feature_extractor, (pixels.to(self.device) + 1) / 2).to(enc.dtype)
        feats = enc(px, output_hidden_states=True).hidden_states[-2]
        with torch.no_grad():  # diffusers' unconditional image: an all-zero (normalised) tensor
            zero = enc(torch.zeros_like(px[:1]), output_hidden_states=True).hidden_states[-2]
        return self._inputs(condition, n, branches, feats, zero)


register_kind(
    KindInfo(
        "sd+ip-adapter",
        "Stable Diffusion 1.x with an IP-Adapter Plus",
        IPAdapterBackbone,
        "diffsim-c",
        base="sd",
        option="ip_adapter",
    )
)
