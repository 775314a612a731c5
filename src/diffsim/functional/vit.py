"""Differentiable CLIP / DINOv2 / DINOv3 layer captures (the cached path runs them under ``no_grad``)."""

from __future__ import annotations

from typing import Any

import torch

from ..backbones.vit import LayerCapture


def capture(backbone: Any, unit: torch.Tensor, index: int) -> LayerCapture:
    """Run the encoder up to layer ``index`` on (N, 3, S, S) in [0, 1], with gradients, and stop there."""
    x = ((unit.to(backbone.device) - backbone.mean.to(unit.dtype)) / backbone.std.to(unit.dtype)).to(backbone.dtype)
    return backbone.run_to_layer(x, index)
