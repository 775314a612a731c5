"""CLIP ViT and DINOv2 image encoders (transformers) as feature extractors for the metric zoo.

One loaded model serves every metric that names it (``share=True``): CLIP-I, CLIP AAS and CLIP
features share ``openai/clip-vit-base-patch32``; DINOv2, DINOv2 AAS, DINOv2 features and FFA share
their DINOv2 checkpoint. Images come in as (N, 3, S, S) tensors in [0, 1]; the backbone applies its
family's normalisation (CLIP or ImageNet mean/std).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..aas import QKV
from ..devices import dtype_name, resolve_device, resolve_dtype
from ..errors import ConfigError, LayerError
from ..models import shared_model
from .capture import StopForward
from .identity import model_identity
from .loading import load_cache_first, resolve_source

logger = logging.getLogger(__name__)

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
DEFAULT_DINOV2 = "facebook/dinov2-small"
DINOV2_SIZES = {
    "small": "facebook/dinov2-small",
    "base": "facebook/dinov2-base",
    "large": "facebook/dinov2-large",
    "giant": "facebook/dinov2-giant",
}
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FAMILIES = ("clip", "dinov2")
QKV_INPUTS = ("normed", "residual")
#: shortest side before the 224 crop, per family (scaled with the crop size): CLIP 224, DINOv2 256
RESIZE = {"clip": 224, "dinov2": 256}


@dataclass
class LayerCapture:
    """What one encoder layer saw and produced: its residual input (N, T, C) and its output (N, T, C)."""

    residual: torch.Tensor
    output: torch.Tensor


def _load(model: str, family: str, dtype: torch.dtype, revision: str | None) -> nn.Module:
    from transformers import CLIPVisionModelWithProjection, Dinov2Model

    cls = CLIPVisionModelWithProjection if family == "clip" else Dinov2Model
    default = DEFAULT_CLIP if family == "clip" else DEFAULT_DINOV2
    src, local = resolve_source(model, f"{family} model", f"config.json + weights; hub id e.g. {default}")
    kw: dict[str, Any] = {"torch_dtype": dtype}
    if revision:
        kw["revision"] = revision

    def attempt(**extra: Any) -> nn.Module:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(src, **{k: v for k, v in kw.items() if k != "torch_dtype"}, **extra)
        if family == "clip" and getattr(cfg, "model_type", "") == "clip":
            # a full CLIPModel checkpoint: load only its vision tower and visual projection
            vcfg = cfg.vision_config
            vcfg.projection_dim = cfg.projection_dim
            cfg = vcfg
        return cls.from_pretrained(src, config=cfg, **kw, **extra)

    with _transformers_errors_only():
        return load_cache_first(
            attempt,
            src,
            local,
            f"{family} model",
            "model='/path/to/local/folder' (a folder written by save_pretrained)",
            cli_fix="--model PATH (a local folder written by save_pretrained)",
        )


@contextmanager
def _transformers_errors_only() -> Iterator[None]:
    """Hide transformers' load report (the text tower of a full CLIP checkpoint is unused on purpose)."""
    from transformers.utils import logging as tlog

    old = tlog.get_verbosity()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(old)


def _family_of(model: nn.Module) -> str:
    mt = getattr(model.config, "model_type", "")
    if mt.startswith("clip"):
        return "clip"
    if mt.startswith("dinov2"):
        return "dinov2"
    raise ConfigError(f"unsupported vision model type {mt!r}: expected a CLIP or DINOv2 checkpoint")


class ViTBackbone:
    """A loaded CLIP vision tower (with projection) or DINOv2 encoder, eval mode, no gradients."""

    def __init__(
        self, model: nn.Module, source: str, device: torch.device, dtype: torch.dtype, identity: str | None = None
    ) -> None:
        self.model = model.to(device=device).eval().requires_grad_(False)
        self.family = _family_of(model)
        self.source = source
        #: the weights actually loaded (hub commit, or resolved path + file digest): the feature cache key
        self.identity = identity or model_identity(source)
        self.device = device
        self.dtype = dtype
        mean, std = (CLIP_MEAN, CLIP_STD) if self.family == "clip" else (IMAGENET_MEAN, IMAGENET_STD)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.forward_calls = 0

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike,
        family: str,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        revision: str | None = None,
        share: bool = True,
    ) -> ViTBackbone:
        """Load (or reuse, with ``share=True``) ``model`` (hub id or local folder) of ``family``."""
        if family not in FAMILIES:
            raise ConfigError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
        if family == "dinov2" and str(model) in DINOV2_SIZES:
            model = DINOV2_SIZES[str(model)]
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        ident = model_identity(model, revision)
        key = ("vit", family, ident, str(dev), str(dt), revision)

        def load() -> ViTBackbone:
            logger.info("loading %s on %s (%s)", model, dev, dt)
            loaded = _load(str(model), family, dt, revision)
            full = model_identity(model, revision) if ident.endswith("?") else ident  # a Hub id just downloaded
            backbone = cls(loaded, str(model), dev, dt, full)
            if backbone.family != family:
                raise ConfigError(f"{model} is a {backbone.family} model, not {family}")
            return backbone

        return shared_model(key, load, share)

    # ---------------------------------------------------------------- structure
    @property
    def encoder_layers(self) -> nn.ModuleList:
        m: Any = self.model  # a CLIP vision tower or a DINOv2 model: its layers are reached by name
        return m.vision_model.encoder.layers if self.family == "clip" else m.encoder.layer

    @property
    def num_layers(self) -> int:
        return len(self.encoder_layers)

    def layer_index(self, layer: int) -> int:
        """Validate a layer index (negative counts from the end: -1 is the last layer)."""
        n = self.num_layers
        if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
            raise LayerError(
                f"layer must be an integer in [{-n}, {n - 1}] for {self.source} ({n} layers); got {layer!r}"
            )
        return layer % n

    def _parts(self, index: int) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module, nn.Module, int]:
        """(norm, q, k, v, out) linear layers and the head count of layer ``index``."""
        layer: Any = self.encoder_layers[index]  # CLIP or DINOv2 layer, module names vary by transformers version
        if self.family == "clip":
            a = layer.self_attn
            return layer.layer_norm1, a.q_proj, a.k_proj, a.v_proj, a.out_proj, a.num_heads
        a = layer.attention
        if hasattr(a, "q_proj"):  # transformers >= 5
            return layer.norm1, a.q_proj, a.k_proj, a.v_proj, a.o_proj, a.num_attention_heads
        s = a.attention  # transformers 4.x: Dinov2SelfAttention + Dinov2SelfOutput
        return layer.norm1, s.query, s.key, s.value, a.output.dense, s.num_attention_heads

    def out_proj(self, index: int) -> nn.Module:
        return self._parts(index)[4]

    # ----------------------------------------------------------------- compute
    def normalise(self, unit: torch.Tensor) -> torch.Tensor:
        return ((unit.to(self.device) - self.mean) / self.std).to(self.dtype)

    @torch.no_grad()
    def capture(self, unit: torch.Tensor, index: int) -> LayerCapture:
        """Run the encoder up to layer ``index`` (included) on images in [0, 1] and stop."""
        seen: dict[str, torch.Tensor] = {}

        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            seen["residual"] = args[0] if args else kwargs["hidden_states"]
            seen["output"] = output[0] if isinstance(output, tuple) else output
            raise StopForward

        h = self.encoder_layers[index].register_forward_hook(hook, with_kwargs=True)
        try:
            self.forward_calls += 1
            self._forward(unit)
        except StopForward:
            pass
        finally:
            h.remove()
        return LayerCapture(seen["residual"], seen["output"])

    def _forward(self, unit: torch.Tensor) -> Any:
        x = self.normalise(unit)
        if self.family == "clip":
            return self.model(pixel_values=x, interpolate_pos_encoding=True)
        return self.model(pixel_values=x)

    def qkv(self, cap: LayerCapture, index: int, qkv_input: str = "normed") -> QKV:
        """Q/K/V (N, heads, T, D) of layer ``index`` from its own projections.

        ``qkv_input="normed"`` applies them to the layer's pre-attention LayerNorm output (what the
        attention really sees); ``"residual"`` to the un-normalised residual stream (the authors' CLIP code).
        """
        if qkv_input not in QKV_INPUTS:
            raise ConfigError(f"qkv_input must be one of {', '.join(QKV_INPUTS)}; got {qkv_input!r}")
        norm, q, k, v, _, heads = self._parts(index)
        x = norm(cap.residual) if qkv_input == "normed" else cap.residual
        n, t, _ = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(n, t, heads, -1).transpose(1, 2).contiguous()

        return QKV(split(q(x)), split(k(x)), split(v(x)))

    @torch.no_grad()
    def pooled(self, unit: torch.Tensor) -> torch.Tensor:
        """CLIP: projected image embedding (N, P); DINOv2: CLS token after the final LayerNorm (N, C)."""
        self.forward_calls += 1
        out = self._forward(unit)
        return out.image_embeds if self.family == "clip" else out.last_hidden_state[:, 0]

    @torch.no_grad()
    def patch_tokens(self, unit: torch.Tensor) -> torch.Tensor:
        """DINOv2 patch tokens after the final LayerNorm (N, h*w, C), CLS and registers dropped."""
        if self.family != "dinov2":
            raise ConfigError("patch tokens are only provided for DINOv2 backbones")
        self.forward_calls += 1
        out = self._forward(unit)
        skip = 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)
        return out.last_hidden_state[:, skip:]

    def describe(self) -> dict[str, Any]:
        return {"model": self.identity, "family": self.family, "dtype": dtype_name(self.dtype)}
