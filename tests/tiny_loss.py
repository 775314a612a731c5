"""Tiny real-class metrics for the functional / loss tests: one per differentiable metric kind.

The backbone kinds come from the tiny-model table (``tests/tiny_builders.py``): every row whose ``loss`` is
not None takes part with its kind's default metric, so registering a kind (``register_tiny``) adds it to
``test_loss.py`` / ``test_functional.py`` with no edit here. The metrics of no backbone kind (the ViT AAS,
LPIPS) are listed below. Every metric loads through the library's real path (``create_metric``) on the tiny
random-weight models; :func:`float64_copy` is the metric with ``dtype="float64"`` (the public setting) for
``torch.autograd.gradcheck``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from diffsim import create_metric

from .conftest import SIZE
from .tiny_builders import TinyBackbone, tiny_backbones
from .tiny_vit import VIT_SIZE

LPIPS_SIZE = 32
CPU: dict[str, Any] = {"device": "cpu", "dtype": "float32"}


def _lpips(request: pytest.FixtureRequest) -> Any:
    pytest.importorskip("lpips")  # the official v0.1 linear heads ship in its wheel
    with torch.random.fork_rng():  # random VGG weights: the same draw whatever ran before (test order)
        torch.manual_seed(0)
        return create_metric("lpips-vgg", weights=None, size=LPIPS_SIZE, device="cpu")


#: differentiable metrics of no backbone kind -> their builder
OTHERS: dict[str, Callable[[pytest.FixtureRequest], Any]] = {
    "clip-aas": lambda r: create_metric("clip-aas", model=r.getfixturevalue("tiny_clip_path"), size=VIT_SIZE, **CPU),
    "dinov2-aas": lambda r: create_metric(
        "dinov2-aas", model=r.getfixturevalue("tiny_dinov2_path"), size=VIT_SIZE, resize=VIT_SIZE, **CPU
    ),
    "lpips": _lpips,
}


def loss_rows() -> dict[str, TinyBackbone]:
    """{kind: row} of the tiny backbones in the loss tests."""
    return {kind: row for kind, row in tiny_backbones().items() if row.loss is not None}


#: every kind of the loss tests (backbone kinds at collection time, then the others)
KINDS = (*loss_rows(), *OTHERS)
#: the kinds cheap enough for gradcheck and finite differences in float64
GRADCHECK = tuple(k for k in KINDS if k in OTHERS or loss_rows()[k].gradcheck)


def row_metric(row: TinyBackbone, folder: Callable[[str], Any], fixture: Callable[[str], Any]) -> Any:
    """``row``'s default metric on its tiny model in the loss tests: ``folder(key)`` is a tiny model's folder,
    ``fixture(name)`` a session fixture's value."""
    paths = {key: str(folder(key)) for key in (row.key, *row.needs)}
    if row.loss_model:
        paths[row.key] = str(fixture(row.loss_model))
    return create_metric(row.metric, **{**row.metric_overrides(paths, SIZE), **(row.loss or {})})


def build(kind: str, request: pytest.FixtureRequest) -> Any:
    """The metric of ``kind`` (a backbone kind of the tiny table or one of :data:`OTHERS`) on its tiny model
    (CPU, float32)."""
    if kind in OTHERS:
        return OTHERS[kind](request)
    return row_metric(tiny_backbones()[kind], request.getfixturevalue("tiny_backbone"), request.getfixturevalue)


def gradcheck_ok(metric: Any) -> bool:
    """False for the default metric of a tiny row that says ``gradcheck=False``."""
    return all(row.gradcheck for row in loss_rows().values() if row.metric == metric.name)


def working_size(metric: Any) -> int:
    """The side the metric's network sees (pixels at this size are not resampled by either path)."""
    return int(metric.settings.size if not hasattr(metric, "size") else metric.size)


def float64_copy(metric: Any) -> Any:
    """The same metric in float64 on the CPU (its own float64 model, loaded through the public dtype setting)."""
    return metric.with_settings(dtype="float64", device="cpu")
