"""DiffSim (and the other attention / perceptual metrics) as a differentiable training loss.

    loss_fn = create_metric("diffsim-s", step=500).as_loss()     # or DiffSimLoss(metric)
    loss = loss_fn(x, y)                                         # (N, 3, H, W) in [0, 1], any device
    loss.backward()                                              # gradients reach x and y

``1 - score`` for similarities (DiffSim-S / -C on SD, SDXL and DiT, CLIP / DINOv2 AAS), the distance
itself for distances (LPIPS, ``similarity="mse"``). Any metric declaring ``is_differentiable`` can be a
loss: scores come from its own ``differentiable_scores`` (built on :mod:`diffsim.functional`: no cache,
no Pillow), which on pixels at the metric's working size are the cached ``metric.score``. The
backbone stays frozen (``requires_grad=False``) and in eval mode whatever ``train()`` is called; it is
not a submodule (the loss has no parameters and an empty ``state_dict``), and ``.to(device)`` /
``.to(dtype)`` re-create the metric there (:meth:`~diffsim.metrics.base.FeatureMetric.with_settings`,
sharing loaded models).

Noise: by default the metric's seeded draw, identical at every call (the loss is a deterministic
function of the images); ``noise="fresh"`` draws new noise at every call from a generator seeded with
``seed`` (as score-distillation losses do). ``checkpoint=True`` turns on gradient checkpointing in the
U-Net blocks that run whole and in the VAE encoder (SD, SDXL): less memory, one more forward in backward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from .backbones.latent_diffusion import LatentDiffusionBackbone
from .errors import ConfigError
from .functional.diffusion import Noise, fresh_noise, materialise
from .registry import differentiable_metrics

REDUCTIONS = ("mean", "sum", "none")
NOISE = ("fixed", "fresh")


def backbone_modules(backbone: Any) -> list[nn.Module]:
    """Every ``nn.Module`` a backbone runs (U-Net / transformer, VAE, encoders, pipeline components)."""
    bb = materialise(backbone)
    if bb is None:  # a metric without a network
        return []
    found: dict[int, nn.Module] = {}
    for name in ("unet", "vae", "transformer", "model", "features"):
        m = getattr(bb, name, None)
        if isinstance(m, nn.Module):
            found[id(m)] = m
    parts = getattr(bb, "parts", None)
    if parts is not None:
        for m in vars(parts).values():
            if isinstance(m, nn.Module):
                found[id(m)] = m
    pipe = getattr(bb, "pipe", None)
    for m in getattr(pipe, "components", {}).values() if pipe is not None else ():
        if isinstance(m, nn.Module):
            found[id(m)] = m
    return list(found.values())


class DiffSimLoss(nn.Module):
    """``forward(x, y) -> loss``: ``1 - score`` (similarities) or the distance, reduced over the pairs.

    ``reduction``: ``"mean"`` (default), ``"sum"`` or ``"none"`` (one value per pair).
    ``noise``: ``"fixed"`` (the metric's seeded draw) or ``"fresh"`` (a new draw per call, from a
    generator seeded with ``seed``, default the metric's seed). ``checkpoint``: gradient checkpointing.
    """

    metric: Any  # the wrapped diffsim metric (a plain attribute, not a submodule)

    def __init__(
        self,
        metric: Any,
        reduction: str = "mean",
        *,
        noise: str = "fixed",
        seed: int | None = None,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
        if noise not in NOISE:
            raise ConfigError(f"noise must be one of {', '.join(NOISE)}; got {noise!r}")
        if not getattr(metric, "is_differentiable", False):
            name = getattr(metric, "name", type(metric).__name__)
            raise ConfigError(f"{name} cannot be a loss; differentiable: {', '.join(differentiable_metrics())}")
        self.reduction = reduction
        self.noise = noise
        self.checkpoint = bool(checkpoint)
        self._set_metric(metric)
        if noise == "fresh" and not self._diffusion:
            raise ConfigError(f"noise='fresh' applies to diffusion metrics; {metric.name} adds no noise")
        base = seed if seed is not None else int(getattr(metric, "seed", 0) or 0)
        self.generator = torch.Generator("cpu").manual_seed(base)

    def _set_metric(self, metric: Any) -> None:
        object.__setattr__(self, "metric", metric)  # not a submodule: no parameters, no state_dict entries
        self._diffusion = isinstance(materialise(getattr(metric, "backbone", None)), LatentDiffusionBackbone)
        self.freeze()

    def freeze(self) -> None:
        """Backbone in eval mode with ``requires_grad=False`` on every parameter."""
        for m in backbone_modules(getattr(self.metric, "backbone", None)):
            m.eval().requires_grad_(False)

    @property
    def higher_is_better(self) -> bool:
        """The wrapped metric's polarity (the loss itself is always lower-is-better)."""
        return bool(self.metric.higher_is_better)

    def train(self, mode: bool = True) -> DiffSimLoss:
        """Train / eval of the loss module; the backbone stays in eval mode either way."""
        super().train(mode)
        self.freeze()
        return self

    # ---------------------------------------------------------------- devices
    def to(self, *args: Any, **kwargs: Any) -> DiffSimLoss:
        """Re-create the metric on another device / dtype (shared loaded models); the module itself moves too."""
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        changes: dict[str, Any] = {}
        cur = self.metric.device
        if device is not None and (device.type != cur.type or (device.index is not None and device.index != cur.index)):
            changes["device"] = str(device)
        if dtype is not None and dtype != self.metric.dtype:
            changes["dtype"] = dtype
        if changes:
            self._set_metric(self.metric.with_settings(**changes))
        return super().to(*args, **kwargs)

    def cuda(self, device: int | torch.device | None = None) -> DiffSimLoss:
        return self.to(torch.device("cuda", device) if isinstance(device, int) else (device or "cuda"))

    def cpu(self) -> DiffSimLoss:
        return self.to("cpu")

    # ---------------------------------------------------------------- forward
    def _noise(self) -> Noise | None:
        if self.noise == "fixed":
            return None
        bb = materialise(self.metric.backbone)
        return fresh_noise(bb, int(self.metric.size) // int(bb.latent_factor), self.generator)

    def scores(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The metric's per-pair scores (N,), differentiable."""
        return self.metric.differentiable_scores(x, y, noise=self._noise(), checkpoint=self.checkpoint)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s = self.scores(x, y)
        loss = 1.0 - s if self.metric.higher_is_better else s
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def extra_repr(self) -> str:
        return f"{self.metric!r}, reduction={self.reduction!r}, noise={self.noise!r}, checkpoint={self.checkpoint}"
