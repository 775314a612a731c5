"""Differentiable CLIP / DINOv2 layer captures (the cached path runs them under ``no_grad``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..backbones.capture import StopForward
from ..backbones.vit import LayerCapture


def capture(backbone: Any, unit: torch.Tensor, index: int) -> LayerCapture:
    """Run the encoder up to layer ``index`` on (N, 3, S, S) in [0, 1], with gradients, and stop there."""
    seen: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        seen["residual"] = args[0] if args else kwargs["hidden_states"]
        seen["output"] = output[0] if isinstance(output, tuple) else output
        raise StopForward

    x = ((unit.to(backbone.device) - backbone.mean.to(unit.dtype)) / backbone.std.to(unit.dtype)).to(backbone.dtype)
    h = backbone.encoder_layers[index].register_forward_hook(hook, with_kwargs=True)
    try:
        if backbone.family == "clip":
            backbone.model(pixel_values=x, interpolate_pos_encoding=True)
        else:
            backbone.model(pixel_values=x)
    except StopForward:
        pass
    finally:
        h.remove()
    return LayerCapture(seen["residual"], seen["output"])
