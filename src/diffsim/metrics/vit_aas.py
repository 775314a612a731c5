"""CLIP AAS and DINOv2 AAS: the Aligned Attention Score in one self-attention layer of a ViT.

The same AAS math as DiffSim-S (:mod:`diffsim.aas`); only the features differ: Q/K/V of layer
``layer`` (default: the last, as in the paper's Table 3), CLS token kept, from the layer's own
projections. Two switches reproduce the authors' (inconsistent) code:

* ``qkv_input="normed"`` (default) projects the layer's pre-attention LayerNorm output, which is what
  the attention really sees and what DiffSim-S and the authors' DINOv2 AAS do; ``"residual"`` projects
  the un-normalised residual stream, as the authors' CLIP AAS does (official spec 4.2).
* ``out_proj=False`` (default) compares attention outputs before the output projection, like
  DiffSim-S and DINOv2 AAS; ``True`` applies the layer's output projection first (authors' CLIP AAS).

Defaults are the same for both families, so CLIP and DINOv2 AAS are the same method; the authors'
CLIP AAS is ``create_metric("clip-aas", qkv_input="residual", out_proj=True)``.
"""
from __future__ import annotations

from typing import Any

import torch

from .. import aas
from ..aas import QKV
from ..backbones.vit import DEFAULT_CLIP, DEFAULT_DINOV2, QKV_INPUTS
from ..errors import ConfigError
from ..features import Features
from .vit import ViTMetric


class ViTAAS(ViTMetric):
    """AAS in a ViT self-attention layer; higher is more similar (1 for identical images)."""

    def __init__(self, backbone, layer: int = -1, qkv_input: str = "normed", out_proj: bool = False,
                 **kw: Any) -> None:
        super().__init__(backbone, **kw)
        self.layer = backbone.layer_index(layer)
        if qkv_input not in QKV_INPUTS:
            raise ConfigError(f"qkv_input must be one of {', '.join(QKV_INPUTS)}; got {qkv_input!r}")
        self.qkv_input = qkv_input
        self.out_proj = bool(out_proj)

    def settings(self) -> dict[str, Any]:
        return {"layer": self.layer, "qkv_input": self.qkv_input, "out_proj": self.out_proj}

    def _compute(self, unit: torch.Tensor) -> Features:
        cap = self.backbone.capture(unit, self.layer)
        f = self.backbone.qkv(cap, self.layer, self.qkv_input)
        return Features({"q": f.q, "k": f.k, "v": f.v})

    @staticmethod
    def qkv(feats: Features) -> QKV:
        t = feats.tensors
        return QKV(t["q"], t["k"], t["v"])

    def _post(self):
        if not self.out_proj:
            return None
        lin = self.backbone.out_proj(self.layer)
        w, b = lin.weight.float(), None if lin.bias is None else lin.bias.float()

        def post(x: torch.Tensor) -> torch.Tensor:  # (N, H, T, D) -> (N, T, C)
            n, h, t, d = x.shape
            return torch.nn.functional.linear(x.transpose(1, 2).reshape(n, t, h * d), w, b)

        return post

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        self._check_pair(a, b)
        return aas.score(self.qkv(a), self.qkv(b), post=self._post())

    def compare_matrix(self, a: Features, b: Features) -> torch.Tensor:
        self._check_pair(a, b)
        return aas.score_matrix(self.qkv(a), self.qkv(b), post=self._post())


class CLIPAAS(ViTAAS):
    """AAS in a CLIP ViT layer (default ``openai/clip-vit-base-patch32``, last layer, 224 px)."""

    name = "clip-aas"
    family = "clip"
    default_model = DEFAULT_CLIP


class DINOv2AAS(ViTAAS):
    """AAS in a DINOv2 layer (default ``facebook/dinov2-small``, last layer, resize 256 + crop 224)."""

    name = "dinov2-aas"
    family = "dinov2"
    default_model = DEFAULT_DINOV2
