"""Compute the golden fingerprints (scores per metric, Q/K/V values per backbone) on the tiny models.

Shared by ``tests/test_golden.py`` (which compares against ``fingerprints.json``) and
``python -m tests.golden.regenerate`` (which rewrites it). Everything is deterministic: the tiny models
are built with fixed seeds, the images are made from a fixed generator, everything runs in float32 on CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from diffsim import create_metric

from ..conftest import SIZE
from ..test_every_metric import tiny_overrides
from ..tiny_builders import build_all, golden_name, tiny_backbones

FILE = Path(__file__).with_name("fingerprints.json")
REGEN = "python -m tests.golden.regenerate"
SCORE_ATOL = 2e-6  # absolute tolerance on a score (tiny-model DiffSim-S pairs differ by ~1e-4 only)
SCORE_RTOL = 1e-6  # plus this fraction of the score (scores such as MSE can be large)
QKV_ATOL = 1e-4  # absolute tolerance on a Q/K/V value
GLOBAL_SEED = 19  # torch's global RNG before each metric is built
QKV_VALUES = 6  # values kept per Q, K and V tensor (evenly spaced over the flattened tensor)


def qkv_metrics() -> dict[str, str]:
    """Backbone -> the metric whose Q/K/V fingerprints it: each kind's default metric (tests/tiny_builders.py)."""
    return {golden_name(row): row.metric for row in tiny_backbones().values()}


def fixture_images() -> list[torch.Tensor]:
    """Five fixed images in [0, 1]: smooth (bicubic-upsampled noise), one blend, one non-square."""
    g = torch.Generator().manual_seed(19)
    low = torch.rand(5, 3, 6, 6, generator=g)
    smooth = torch.nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
    smooth = smooth.clamp(0, 1)
    images = [smooth[i] for i in range(4)]
    images.append((0.7 * smooth[0] + 0.3 * smooth[1]).clamp(0, 1))  # a near neighbour of image 0
    wide = torch.nn.functional.interpolate(low[4:], size=(SIZE, SIZE * 3 // 2), mode="bicubic", align_corners=False)
    images.append(wide[0].clamp(0, 1))  # non-square: catches changes in how inputs are resized
    return images


# (a, b) indices into fixture_images(): identical, near, far, far, non-square against square
PAIRS = [(0, 0), (0, 4), (0, 1), (2, 3), (5, 0)]


def build(name: str, paths: dict[str, str]):
    """Metric ``name`` on its tiny model. The global RNG is seeded first: metrics with ``weights=None``
    (LPIPS, Gram) draw their random torchvision weights from it, which must not depend on earlier tests."""
    torch.manual_seed(GLOBAL_SEED)
    return create_metric(name, **tiny_overrides(name, paths))


def metric_scores(name: str, paths: dict[str, str], images: list[torch.Tensor]) -> list[float]:
    """Scores of :data:`PAIRS` for metric ``name`` on its tiny model."""
    metric = build(name, paths)
    out = []
    for i, j in PAIRS:  # one pair per call: images of different shapes never share a batch
        out.append(float(metric.score(images[i], images[j])))
    return out


def _spread(t: torch.Tensor, n: int = QKV_VALUES) -> list[float]:
    flat = t.detach().float().flatten()
    idx = torch.linspace(0, flat.numel() - 1, n).round().long()
    return [float(v) for v in flat[idx]]


def backbone_qkv(name: str, paths: dict[str, str], images: list[torch.Tensor]) -> dict[str, Any]:
    """A few Q/K/V values of the first embedded layer of metric ``name`` for fixture image 0."""
    metric = build(name, paths)
    feats = metric.embed([images[0]])
    out: dict[str, Any] = {}
    for part in ("q", "k", "v"):
        keys = sorted(k for k in feats.tensors if k.endswith(f"/{part}"))
        if not keys:
            raise AssertionError(f"{name}: embedded features have no '/{part}' tensor: {sorted(feats.tensors)}")
        t = feats.tensors[keys[0]]
        out[part] = {"shape": list(t.shape), "values": _spread(t), "mean_abs": float(t.float().abs().mean())}
    return out


def compute(paths: dict[str, str], metrics: list[str]) -> dict[str, Any]:
    """The fingerprints of ``metrics`` and of every backbone of :func:`qkv_metrics`."""
    images = fixture_images()
    return {
        "scores": {name: metric_scores(name, paths, images) for name in metrics},
        "qkv": {bb: backbone_qkv(m, paths, images) for bb, m in sorted(qkv_metrics().items())},
    }


def build_paths(root: Path) -> dict[str, str]:
    """Build the tiny models (as the conftest fixtures do) under ``root``; returns the path table."""
    from ..tiny_peers import make_peers
    from ..tiny_vit import build_tiny_clip, build_tiny_dinov2

    return {
        **make_peers(root / "tiny-peers"),
        **build_all(root),
        "clip": str(build_tiny_clip(root / "tiny-clip" / "model")),
        "dino": str(build_tiny_dinov2(root / "tiny-dinov2" / "model")),
    }
