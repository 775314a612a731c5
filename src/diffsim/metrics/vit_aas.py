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

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from ..aas import QKV
from ..aas import score as aas_score
from ..aas import score_matrix as aas_score_matrix
from ..backbones.vit import DEFAULT_CLIP, DEFAULT_DINOV2, QKV_INPUTS
from ..bounds import check_int, one_of
from ..features import Features
from ..functional.scores import vit_aas
from ..settings import compare_field
from .vit import ViTMetric, ViTSettings


@dataclasses.dataclass(frozen=True)
class ViTAASSettings(ViTSettings):
    layer: int = -1  # encoder layer index (negative counts from the end)
    qkv_input: str = "normed"  # or "residual" (authors' CLIP AAS)
    out_proj: bool = compare_field(False)  # apply the layer's output projection before the score (authors' CLIP AAS)

    def validate(self) -> None:
        super().validate()
        check_int("layer", self.layer)
        one_of("qkv_input", self.qkv_input, QKV_INPUTS)
        self._set("out_proj", bool(self.out_proj))


class ViTAAS(ViTMetric):
    """AAS in a ViT self-attention layer; higher is more similar (1 for identical images)."""

    Settings = ViTAASSettings
    settings: ViTAASSettings

    def setup(self) -> None:
        self.layer = self.backbone.layer_index(self.settings.layer)

    def feature_resolved(self) -> dict[str, Any]:
        return {**super().feature_resolved(), "layer": self.layer}

    def forward(self, pixels: torch.Tensor) -> Features:
        cap = self.backbone.capture(pixels, self.layer)
        f = self.backbone.qkv(cap, self.layer, self.settings.qkv_input)
        return Features({"q": f.q, "k": f.k, "v": f.v})

    @staticmethod
    def qkv(feats: Features) -> QKV:
        t = feats.tensors
        return QKV(t["q"], t["k"], t["v"])

    def _post(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        if not self.settings.out_proj:
            return None
        lin = self.backbone.out_proj(self.layer)
        w, b = lin.weight.float(), None if lin.bias is None else lin.bias.float()

        def post(x: torch.Tensor) -> torch.Tensor:  # (N, H, T, D) -> (N, T, C)
            n, h, t, d = x.shape
            return torch.nn.functional.linear(x.transpose(1, 2).reshape(n, t, h * d), w, b)

        return post

    is_differentiable = True

    def differentiable_scores(
        self, x: torch.Tensor, y: torch.Tensor, noise: Any = None, checkpoint: bool = False
    ) -> torch.Tensor:
        """:func:`diffsim.functional.vit_aas` with this metric's settings (``noise``, ``checkpoint``: unused)."""
        s = self.settings
        return vit_aas(
            x, y, self.backbone, self.layer, size=s.size, resize=self.resize, qkv_input=s.qkv_input, out_proj=s.out_proj
        )

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        self.check_pair(a, b)
        return aas_score(self.qkv(a), self.qkv(b), post=self._post())

    def compare_matrix(self, a: Features, b: Features) -> torch.Tensor:
        self.check_pair(a, b)
        return aas_score_matrix(self.qkv(a), self.qkv(b), post=self._post())


class CLIPAAS(ViTAAS):
    """AAS in a CLIP ViT layer (default ``openai/clip-vit-base-patch32``, last layer, 224 px)."""

    default_name = "clip-aas"
    family = "clip"
    default_model = DEFAULT_CLIP


class DINOv2AAS(ViTAAS):
    """AAS in a DINOv2 layer (default ``facebook/dinov2-small``, last layer, resize 256 + crop 224)."""

    default_name = "dinov2-aas"
    family = "dinov2"
    default_model = DEFAULT_DINOV2
