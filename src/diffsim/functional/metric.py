"""A configured metric's scores through the functional path: same settings, no cache, differentiable."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from .diffusion import Noise
from .scores import diffsim_s, lpips, vit_aas

SUPPORTED = "diffsim-s (SD, SDXL), diffsim-dit, diffsim-c, clip-aas, dinov2-aas and lpips"


def supports(metric: Any) -> bool:
    """Whether :func:`metric_scores` serves this metric."""
    from ..metrics.attention import AttentionMetric
    from ..metrics.lpips import LPIPS
    from ..metrics.vit_aas import ViTAAS

    return isinstance(metric, (AttentionMetric, ViTAAS, LPIPS))


def metric_scores(
    metric: Any, x: torch.Tensor, y: torch.Tensor, noise: Noise | None = None, checkpoint: bool = False
) -> torch.Tensor:
    """Per-pair scores (N,) of ``metric`` (its settings, layers, timestep, prompt, seed, size) for image
    tensors in [0, 1], computed by :mod:`diffsim.functional.scores`: equal to ``metric.score`` on pixels
    already at the working size, and differentiable with respect to ``x`` and ``y``.

    ``noise`` replaces the seeded (eps_vae, eps) draw of the diffusion metrics; ``checkpoint`` turns on
    gradient checkpointing in the U-Net and VAE (SD, SDXL).
    """
    from ..metrics.attention import AttentionMetric
    from ..metrics.lpips import LPIPS
    from ..metrics.vit_aas import ViTAAS

    if isinstance(metric, LPIPS):
        return lpips(x, y, metric.backbone.features, metric.lin, metric.taps, size=metric.settings.size)
    if isinstance(metric, ViTAAS):
        vs = metric.settings
        return vit_aas(
            x,
            y,
            metric.backbone,
            metric.layer,
            size=vs.size,
            resize=metric.resize,
            qkv_input=vs.qkv_input,
            out_proj=vs.out_proj,
        )
    if isinstance(metric, AttentionMetric):
        if getattr(metric.settings, "auto_masks", False):
            raise ConfigError(
                f"{metric.name}: foreground masks (auto_masks) are not offered on the differentiable path"
            )
        condition = metric.conditioning.condition(metric)  # the metric's own strategy (prompt, size, scale, class)
        scores = [
            diffsim_s(
                x,
                y,
                metric.backbone,
                path,
                metric.timestep,
                condition,
                metric.seed,
                size=metric.size,
                crop=metric.crop,
                similarity=metric.similarity,
                single_branch=metric.single_branch,
                noise=noise,
                checkpoint=checkpoint,
                layer_kind=metric.layer_kind,
                compare_dtype=metric.compare_dtype,
            )
            for path in metric.layers
        ]
        return scores[0] if len(scores) == 1 else torch.stack(scores).mean(0)
    raise ConfigError(
        f"{getattr(metric, 'name', type(metric).__name__)} has no differentiable path; supported: {SUPPORTED}"
    )
