"""CLIP ViT, DINOv2 and DINOv3 image encoders (transformers) as feature extractors for the metric zoo.

One loaded model serves every metric that names it (``share=True``): CLIP-I, CLIP AAS and CLIP
features share ``openai/clip-vit-base-patch32``; DINOv2, DINOv2 AAS, DINOv2 features and FFA share
their DINOv2 checkpoint; DINOv3 and DINOv3 AAS theirs. Images come in as (N, 3, S, S) tensors in [0, 1];
the backbone applies its family's normalisation. What differs between families is one row of
:mod:`.vit_families` (class, layers, normalisation, forward keywords, rotary embeddings).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
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
from .vit_families import (
    CLIP_MEAN,
    CLIP_STD,
    FAMILIES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ViTFamily,
    family_of_type,
    layer_parts,
    rotary,
)
from .vit_families import family as family_row

logger = logging.getLogger(__name__)

__all__ = ["CLIP_MEAN", "CLIP_STD", "IMAGENET_MEAN", "IMAGENET_STD", "LayerCapture", "ViTBackbone"]

DEFAULT_CLIP = FAMILIES["clip"].default
DEFAULT_DINOV2 = FAMILIES["dinov2"].default
DEFAULT_DINOV3 = FAMILIES["dinov3"].default
DINOV2_SIZES = FAMILIES["dinov2"].sizes
QKV_INPUTS = ("normed", "residual")


@dataclass
class LayerCapture:
    """What one encoder layer saw and produced: its residual input (N, T, C), its output (N, T, C) and,
    for rotary families, the (cos, sin) position embeddings it was called with."""

    residual: torch.Tensor
    output: torch.Tensor
    position: tuple[torch.Tensor, torch.Tensor] | None = None


def _load(model: str, row: ViTFamily, dtype: torch.dtype, revision: str | None) -> nn.Module:
    import transformers

    src, local = resolve_source(model, f"{row.name} model", f"config.json + weights; hub id e.g. {row.default}")
    kw: dict[str, Any] = {"torch_dtype": dtype}
    if revision:
        kw["revision"] = revision

    def attempt(**extra: Any) -> nn.Module:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(src, **{k: v for k, v in kw.items() if k != "torch_dtype"}, **extra)
        if row.name == "clip" and getattr(cfg, "model_type", "") == "clip":
            # a full CLIPModel checkpoint: load only its vision tower and visual projection
            vcfg = cfg.vision_config
            vcfg.projection_dim = cfg.projection_dim
            cfg = vcfg
        # the class of the family the checkpoint really is: ViTBackbone then names a mismatch in one line
        mt = getattr(cfg, "model_type", "")
        actual = next((r for r in FAMILIES.values() if r.matches(mt)), row)
        return getattr(transformers, actual.model_class).from_pretrained(src, config=cfg, **kw, **extra)

    with _transformers_errors_only():
        return load_cache_first(
            attempt,
            src,
            local,
            f"{row.name} model",
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


def _family_of(model: nn.Module) -> ViTFamily:
    return family_of_type(getattr(model.config, "model_type", ""))


class ViTBackbone:
    """A loaded CLIP vision tower (with projection), DINOv2 or DINOv3 encoder, eval mode, no gradients."""

    def __init__(
        self, model: nn.Module, source: str, device: torch.device, dtype: torch.dtype, identity: str | None = None
    ) -> None:
        self.model = model.to(device=device).eval().requires_grad_(False)
        self.row = _family_of(model)
        self.family = self.row.name
        self.source = source
        #: the weights actually loaded (hub commit, or resolved path + file digest): the feature cache key
        self.identity = identity or model_identity(source)
        self.device = device
        self.dtype = dtype
        self.mean = torch.tensor(self.row.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(self.row.std, device=device).view(1, 3, 1, 1)
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
        row = family_row(family)
        model = row.sizes.get(str(model), model)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        ident = model_identity(model, revision)
        key = ("vit", family, ident, str(dev), str(dt), revision)

        def load() -> ViTBackbone:
            logger.info("loading %s on %s (%s)", model, dev, dt)
            loaded = _load(str(model), row, dt, revision)
            full = model_identity(model, revision) if ident.endswith("?") else ident  # a Hub id just downloaded
            backbone = cls(loaded, str(model), dev, dt, full)
            if backbone.family != family:
                raise ConfigError(f"{model} is a {backbone.family} model, not {family}")
            return backbone

        return shared_model(key, load, share)

    # ---------------------------------------------------------------- structure
    @property
    def encoder_layers(self) -> nn.ModuleList:
        return self.row.layers(self.model)

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
        return layer_parts(self.encoder_layers[index])

    @property
    def prefix_tokens(self) -> int:
        """Tokens before the patch tokens: CLS plus the register tokens (DINOv3, DINOv2 with registers)."""
        return 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)

    def out_proj(self, index: int) -> nn.Module:
        return self._parts(index)[4]

    # ----------------------------------------------------------------- compute
    def normalise(self, unit: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the encoder's input (mean/std in ``unit``'s dtype, then the model's dtype)."""
        return ((unit.to(self.device) - self.mean.to(unit.dtype)) / self.std.to(unit.dtype)).to(self.dtype)

    def capture(self, unit: torch.Tensor, index: int, grad: bool = False) -> LayerCapture:
        """Run the encoder up to layer ``index`` (included) on images in [0, 1] and stop
        (``grad=True``: keep the autograd graph, for the differentiable path)."""
        with nullcontext() if grad else torch.no_grad():
            return self.run_to_layer(self.normalise(unit), index)

    def run_to_layer(self, x: torch.Tensor, index: int) -> LayerCapture:
        """Run the encoder on normalised pixels up to layer ``index`` (included) and stop."""
        seen: dict[str, Any] = {}

        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            seen["residual"] = args[0] if args else kwargs["hidden_states"]
            seen["output"] = output[0] if isinstance(output, tuple) else output
            seen["position"] = kwargs.get("position_embeddings")
            raise StopForward

        h = self.encoder_layers[index].register_forward_hook(hook, with_kwargs=True)
        try:
            self.forward_calls += 1
            self.model(pixel_values=x, **self.row.forward_kwargs)
        except StopForward:
            pass
        finally:
            h.remove()
        return LayerCapture(seen["residual"], seen["output"], seen["position"])

    def _forward(self, unit: torch.Tensor) -> Any:
        return self.model(pixel_values=self.normalise(unit), **self.row.forward_kwargs)

    def qkv(self, cap: LayerCapture, index: int, qkv_input: str = "normed") -> QKV:
        """Q/K/V (N, heads, T, D) of layer ``index`` from its own projections.

        ``qkv_input="normed"`` applies them to the layer's pre-attention LayerNorm output (what the
        attention really sees); ``"residual"`` to the un-normalised residual stream (the authors' CLIP code).
        Rotary families (DINOv3) then rotate Q and K with the model's own ``apply_rotary_pos_emb`` and the
        position embeddings the layer was called with: the patch tokens only, CLS and registers unrotated,
        exactly the Q/K the layer's attention multiplies.
        """
        if qkv_input not in QKV_INPUTS:
            raise ConfigError(f"qkv_input must be one of {', '.join(QKV_INPUTS)}; got {qkv_input!r}")
        norm, q, k, v, _, heads = self._parts(index)
        x = norm(cap.residual) if qkv_input == "normed" else cap.residual
        n, t, _ = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(n, t, heads, -1).transpose(1, 2).contiguous()

        qh, kh = split(q(x)), split(k(x))
        if self.row.rope:
            if cap.position is None:
                raise ConfigError(f"layer {index} of {self.source} was called without position embeddings")
            cos, sin = cap.position
            qh, kh = rotary(self.encoder_layers[index])(qh, kh, cos, sin)
        return QKV(qh, kh, split(v(x)))

    @torch.no_grad()
    def pooled(self, unit: torch.Tensor) -> torch.Tensor:
        """CLIP: projected image embedding (N, P); DINOv2 / DINOv3: CLS token after the final LayerNorm (N, C)."""
        self.forward_calls += 1
        out = self._forward(unit)
        return out.last_hidden_state[:, 0] if self.row.pooled == "cls" else getattr(out, self.row.pooled)

    @torch.no_grad()
    def patch_tokens(self, unit: torch.Tensor) -> torch.Tensor:
        """DINOv2 / DINOv3 patch tokens after the final LayerNorm (N, h*w, C), CLS and registers dropped."""
        if not self.row.patch_tokens:
            raise ConfigError(f"patch tokens are not provided for {self.family} backbones")
        self.forward_calls += 1
        out = self._forward(unit)
        return out.last_hidden_state[:, self.prefix_tokens :]

    def describe(self) -> dict[str, Any]:
        return {"model": self.identity, "family": self.family, "dtype": dtype_name(self.dtype)}
