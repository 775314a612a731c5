"""The table of ViT families :class:`~diffsim.backbones.vit.ViTBackbone` reads: one row per family.

A row says everything that differs between CLIP, DINOv2 and DINOv3 encoders: the transformers class,
the config ``model_type`` prefixes that identify it, the default checkpoint and size aliases, the
normalisation, the preprocessing ratio (shortest side ``size * num // den`` before the centred crop),
where the encoder layers live, the forward keywords, and whether Q/K carry rotary position embeddings.
The layer parts (pre-attention norm, Q/K/V/output projections, head count) are found by name, so a new
transformers ViT whose layers follow those names is one :func:`register_family` row.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from ..errors import ConfigError

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

Parts = tuple[nn.Module, nn.Module, nn.Module, nn.Module, nn.Module, int]


@dataclass(frozen=True)
class ViTFamily:
    """One ViT family (see the module docstring)."""

    name: str
    model_class: str  # transformers class loaded for it
    model_types: tuple[str, ...]  # config.model_type prefixes that identify it
    default: str  # default hub id
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_ratio: tuple[int, int]  # shortest side before the centred crop = crop * num // den
    layers_path: str  # dotted path of the encoder's layer list inside the model
    forward_kwargs: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, str] = field(default_factory=dict)  # short names -> hub ids ("small" -> ...)
    pooled: str = "cls"  # the global embedding: "cls" (CLS after the final norm) or an output field name
    rope: bool = False  # Q/K of patch tokens are rotated by the model's rotary embedding
    patch_tokens: bool = False  # offers patch tokens (CLS and register tokens dropped)

    def layers(self, model: nn.Module) -> nn.ModuleList:
        out: Any = model
        for part in self.layers_path.split("."):
            out = getattr(out, part)
        return out

    def matches(self, model_type: str) -> bool:
        return any(model_type.startswith(p) for p in self.model_types)

    def resize(self, size: int) -> int:
        """The default shortest side for crop ``size`` (never below the crop)."""
        num, den = self.resize_ratio
        return max(size, num * size // den)


def _first(obj: Any, *names: str) -> Any:
    """The first of ``names`` that ``obj`` has (AttributeError naming them all if none)."""
    for n in names:
        if hasattr(obj, n):
            return getattr(obj, n)
    raise AttributeError(f"{type(obj).__name__} has none of {', '.join(names)}")


def layer_parts(layer: Any) -> Parts:
    """(pre-attention norm, q, k, v, out, heads) of one encoder layer, found by module names.

    CLIP (``layer_norm1``, ``self_attn``, ``out_proj``), DINOv2 and DINOv3 (``norm1``, ``attention``,
    ``o_proj``) in transformers >= 5, and DINOv2's transformers 4.x layout.
    """
    norm = _first(layer, "layer_norm1", "norm1")
    a = _first(layer, "self_attn", "attention")
    if hasattr(a, "q_proj"):
        return (
            norm,
            a.q_proj,
            a.k_proj,
            a.v_proj,
            _first(a, "o_proj", "out_proj"),
            int(_first(a, "num_heads", "num_attention_heads")),
        )
    s = a.attention  # transformers 4.x DINOv2: Dinov2SelfAttention + Dinov2SelfOutput
    return norm, s.query, s.key, s.value, a.output.dense, int(s.num_attention_heads)


def rotary(layer: Any) -> Callable[..., tuple[Any, Any]]:
    """The model's own ``apply_rotary_pos_emb(q, k, cos, sin)`` for a layer (from its attention's module),
    so Q/K are rotated exactly as the model rotates them (DINOv3: patch tokens only)."""
    a = _first(layer, "self_attn", "attention")
    fn = getattr(sys.modules[type(a).__module__], "apply_rotary_pos_emb", None)
    if fn is None:
        raise ConfigError(f"{type(a).__name__} has no apply_rotary_pos_emb in its module; cannot apply its RoPE")
    return fn


FAMILIES: dict[str, ViTFamily] = {}


def register_family(family: ViTFamily) -> ViTFamily:
    """Add (or replace) a family row."""
    FAMILIES[family.name] = family
    return family


def family(name: str) -> ViTFamily:
    if name not in FAMILIES:
        raise ConfigError(f"family must be one of {', '.join(FAMILIES)}; got {name!r}")
    return FAMILIES[name]


def family_of_type(model_type: str) -> ViTFamily:
    for row in FAMILIES.values():
        if row.matches(model_type):
            return row
    names = ", ".join(FAMILIES)
    raise ConfigError(f"unsupported vision model type {model_type!r}: expected a checkpoint of {names}")


register_family(
    ViTFamily(
        "clip",
        "CLIPVisionModelWithProjection",
        ("clip",),
        "openai/clip-vit-base-patch32",
        CLIP_MEAN,
        CLIP_STD,
        (1, 1),
        "vision_model.encoder.layers",
        {"interpolate_pos_encoding": True},
        pooled="image_embeds",  # the projected image embedding (get_image_features)
    )
)
register_family(
    ViTFamily(
        "dinov2",
        "Dinov2Model",
        ("dinov2",),
        "facebook/dinov2-small",
        IMAGENET_MEAN,
        IMAGENET_STD,
        (256, 224),
        "encoder.layer",
        sizes={s: f"facebook/dinov2-{s}" for s in ("small", "base", "large", "giant")},
        patch_tokens=True,
    )
)
register_family(
    ViTFamily(
        "dinov3",
        "DINOv3ViTModel",
        ("dinov3_vit",),
        "facebook/dinov3-vits16-pretrain-lvd1689m",
        IMAGENET_MEAN,
        IMAGENET_STD,
        (1, 1),  # the DINOv3 processor's 224 x 224 view (no 256 resize)
        "model.layer",
        sizes={
            "small": "facebook/dinov3-vits16-pretrain-lvd1689m",
            "small-plus": "facebook/dinov3-vits16plus-pretrain-lvd1689m",
            "base": "facebook/dinov3-vitb16-pretrain-lvd1689m",
            "large": "facebook/dinov3-vitl16-pretrain-lvd1689m",
        },
        rope=True,
        patch_tokens=True,
    )
)
