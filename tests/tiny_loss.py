"""Tiny real-class metrics for the functional / loss tests: one builder per differentiable metric kind.

Every metric loads through the library's real path (``create_metric``) on the tiny random-weight
models of ``tests/tiny_*.py``; :func:`float64_copy` is the metric with ``dtype="float64"`` (the public setting)
for ``torch.autograd.gradcheck``.
"""

from __future__ import annotations

from typing import Any

import pytest

from diffsim import create_metric

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
    """The same metric in float64 on the CPU (its own float64 model, loaded through the public dtype setting)."""
    return metric.with_settings(dtype="float64", device="cpu")
