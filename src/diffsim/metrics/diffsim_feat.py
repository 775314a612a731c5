"""Diffusion-feature ablation (paper Table 3): cosine of the U-Net attention output, no alignment.

Embeds exactly like DiffSim-S (same Q/K/V features, same cache entries), then compares each image's
own self-attention output ``attn(Q, K, V)`` — projected by the layer's ``to_out`` (``out_proj=True``,
the authors' ``attn1`` output) — as one flattened cosine. ``minmax=True`` first rescales each tensor
to [0, 1] by its global min and max, as the authors' unwired ``diffeats`` code does.
"""
from __future__ import annotations

from typing import Any

import torch

from .. import aas
from ..features import Features
from .diffsim_s import DiffSim
from .vit import cosine_matrix, cosine_rows


class DiffSimFeatures(DiffSim):
    """Cosine of a U-Net layer's attention output; higher is more similar."""

    name = "diffsim-feat"

    def __init__(self, *args: Any, out_proj: bool = True, minmax: bool = False, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.out_proj, self.minmax = bool(out_proj), bool(minmax)

    @classmethod
    def from_pretrained(cls, *args: Any, out_proj: bool = True, minmax: bool = False,
                        **kw: Any) -> "DiffSimFeatures":
        base = DiffSim.from_pretrained(*args, **kw)
        return cls(base.backbone, base.layer_names, base.timestep, None, base.prompt, base.size, base.seed,
                   base.single_branch, "cosine", base.crop, base.batch_size, base.cache, out_proj=out_proj,
                   minmax=minmax)

    def feature_config(self, prompt: str | None = None) -> dict[str, Any]:
        cfg = super().feature_config(prompt)
        cfg["metric"] = DiffSim.name  # the same features as DiffSim-S: share cache entries
        return cfg

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "metric": self.name, "out_proj": self.out_proj, "minmax": self.minmax}

    def output(self, feats: Features, layer: str | None = None) -> torch.Tensor:
        """The layer's attention output per image, (N, branches, T, C) float32."""
        path = self._layer(layer)
        f = self.qkv(feats, layer)
        ctx = aas.attend(f.q, f.k, f.v)  # (N, B, H, T, D)
        n, b, h, t, d = ctx.shape
        x = ctx.permute(0, 1, 3, 2, 4).reshape(n, b, t, h * d)
        if self.out_proj:
            lin = dict(self.backbone.unet.named_modules())[path].to_out[0]
            x = torch.nn.functional.linear(x, lin.weight.float(), None if lin.bias is None else lin.bias.float())
        if self.minmax:
            flat = x.reshape(n, -1)
            lo, hi = flat.min(1).values.view(n, 1, 1, 1), flat.max(1).values.view(n, 1, 1, 1)
            x = (x - lo) / (hi - lo).clamp_min(1e-12)
        return x

    def compare(self, a: Features, b: Features, layer: str | None = None) -> torch.Tensor:
        self._check_pair(a, b)
        return cosine_rows(self.output(a, layer), self.output(b, layer))

    def compare_matrix(self, a: Features, b: Features, layer: str | None = None) -> torch.Tensor:
        self._check_pair(a, b)
        return cosine_matrix(self.output(a, layer), self.output(b, layer))
