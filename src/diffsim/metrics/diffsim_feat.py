"""Diffusion-feature ablation (paper Table 3): cosine of the U-Net attention output, no alignment.

Embeds exactly like DiffSim-S (same Q/K/V features, same cache entries), then compares each image's
own self-attention output ``attn(Q, K, V)`` — projected by the layer's ``to_out`` (``out_proj=True``,
the authors' ``attn1`` output) — as one flattened cosine. ``minmax=True`` first rescales each tensor
to [0, 1] by its global min and max, as the authors' unwired ``diffeats`` code does.
"""

from __future__ import annotations

import dataclasses

import torch

from ..aas import attend
from ..backbones.lazy import LazyStableDiffusion
from ..backbones.loading import DEFAULT_MODEL
from ..errors import ConfigError
from ..features import Features
from ..settings import compare_field
from ..similarity import cosine_matrix, cosine_rows
from .attention import AttentionMetric
from .conditioning import TextConditioning
from .diffsim_s import DiffSim, DiffSimSettings


@dataclasses.dataclass(frozen=True)
class DiffSimFeatureSettings(DiffSimSettings):
    out_proj: bool = compare_field(True)  # apply the layer's to_out (the authors' attn1 output)
    minmax: bool = compare_field(False)  # rescale each tensor to [0, 1] first (the authors' unwired code)

    def validate(self) -> None:
        super().validate()
        if self.similarity != "cosine":
            raise ConfigError("diffsim-feat compares with a cosine; similarity must be 'cosine'")
        self._set("out_proj", bool(self.out_proj))
        self._set("minmax", bool(self.minmax))


class DiffSimFeatures(AttentionMetric):
    """Cosine of a U-Net layer's attention output; higher is more similar."""

    Settings = DiffSimFeatureSettings
    settings: DiffSimFeatureSettings
    default_name = "diffsim-feat"
    default_model = DEFAULT_MODEL
    conditioning = TextConditioning()
    backbone_class = LazyStableDiffusion  # the DiffSim-S backbone (SD 1.x/2.x)
    model_kinds = ("sd",)
    is_differentiable = False  # the functional path computes the AAS, not this metric's output cosine

    @property
    def feature_family(self) -> str:
        return DiffSim.default_name  # the same features as DiffSim-S: shared cache entries

    def output(self, feats: Features, layer: str | None = None) -> torch.Tensor:
        """The layer's attention output per image, (N, branches, T, C) float32."""
        path = self._layer(layer)
        f = self.qkv(feats, layer)
        ctx = attend(f.q, f.k, f.v)  # (N, B, H, T, D)
        n, b, h, t, d = ctx.shape
        x = ctx.permute(0, 1, 3, 2, 4).reshape(n, b, t, h * d)
        if self.settings.out_proj:
            lin = dict(self.backbone.unet.named_modules())[path].to_out[0]
            x = torch.nn.functional.linear(x, lin.weight.float(), None if lin.bias is None else lin.bias.float())
        if self.settings.minmax:
            flat = x.reshape(n, -1)
            lo, hi = flat.min(1).values.view(n, 1, 1, 1), flat.max(1).values.view(n, 1, 1, 1)
            x = (x - lo) / (hi - lo).clamp_min(1e-12)
        return x

    def compare(self, a: Features, b: Features, layer: str | None = None) -> torch.Tensor:
        self.check_pair(a, b)
        return cosine_rows(self.output(a, layer), self.output(b, layer))

    def compare_matrix(self, a: Features, b: Features, layer: str | None = None) -> torch.Tensor:
        self.check_pair(a, b)
        return cosine_matrix(self.output(a, layer), self.output(b, layer))
