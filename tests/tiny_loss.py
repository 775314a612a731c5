"""Tiny real-class metrics for the functional / loss tests: one builder per differentiable metric kind.

Every metric loads through the library's real path (``create_metric``) on the tiny random-weight
models of ``tests/tiny_*.py``; :func:`float64_copy` turns a backbone into an unshared float64 copy for
``torch.autograd.gradcheck``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from diffsim import create_metric
from diffsim.loss import backbone_modules

from .conftest import SIZE
from .tiny_vit import VIT_SIZE

LPIPS_SIZE = 32
#: metric kind -> the fixtures it needs
KINDS = ("sd", "sdxl", "dit", "diffsim-c", "clip-aas", "dinov2-aas", "lpips")


def build(kind: str, request: pytest.FixtureRequest) -> Any:
    """The metric of ``kind`` on its tiny model (CPU, float32)."""
    cpu: dict[str, Any] = {"device": "cpu", "dtype": "float32"}
    if kind == "sd":
        return create_metric("diffsim-s", model=request.getfixturevalue("sharp_sd_path"), layer="up1", size=SIZE, **cpu)
    if kind == "sdxl":
        path = request.getfixturevalue("tiny_sdxl_path")
        return create_metric("diffsim-s-sdxl", model=path, layer="up0", timestep=300, size=SIZE, seed=3, **cpu)
    if kind == "dit":
        path = request.getfixturevalue("tiny_dit_path")
        return create_metric("diffsim-dit", model=path, layer="block1", timestep=400, size=SIZE, **cpu)
    if kind == "diffsim-c":
        sd, ip = request.getfixturevalue("tiny_sd_path"), request.getfixturevalue("tiny_ip_adapter_path")
        return create_metric("diffsim-c", model=sd, ip_adapter=ip, timestep=400, size=SIZE, **cpu)
    if kind == "clip-aas":
        return create_metric("clip-aas", model=request.getfixturevalue("tiny_clip_path"), size=VIT_SIZE, **cpu)
    if kind == "dinov2-aas":
        path = request.getfixturevalue("tiny_dinov2_path")
        return create_metric("dinov2-aas", model=path, size=VIT_SIZE, resize=VIT_SIZE, **cpu)
    if kind == "lpips":
        pytest.importorskip("lpips")  # the official v0.1 linear heads ship in its wheel
        return create_metric("lpips-vgg", weights=None, size=LPIPS_SIZE, device="cpu")
    raise ValueError(kind)


def working_size(metric: Any) -> int:
    """The side the metric's network sees (pixels at this size are not resampled by either path)."""
    return int(metric.settings.size if not hasattr(metric, "size") else metric.size)


def float64_copy(metric: Any) -> Any:
    """The same metric on an unshared float64 copy of its backbone (for gradcheck)."""
    import copy

    from diffsim.functional.diffusion import materialise

    bb = copy.deepcopy(materialise(metric.backbone))
    for m in backbone_modules(bb):
        m.double()
    if hasattr(bb, "clear_caches"):
        bb.clear_caches()  # cached prompt embeddings were float32
    if hasattr(bb, "_pooled"):
        bb._pooled.clear()
    object.__setattr__(bb, "dtype", torch.float64)  # (the torchvision backbone is a frozen dataclass)
    if hasattr(bb, "mean") and torch.is_tensor(getattr(bb, "mean", None)):
        bb.mean, bb.std = bb.mean.double(), bb.std.double()
    out = copy.copy(metric)
    out.backbone = bb
    if hasattr(metric, "lin"):
        out.lin = [w.double() for w in metric.lin]
    return out
