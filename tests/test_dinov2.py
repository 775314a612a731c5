"""DINOv2 CLS cosine on a tiny random Dinov2Model: reference by hand, properties, backbone sharing."""

from __future__ import annotations

import pytest
import torch

from diffsim import create_metric

from .tiny_vit import VIT_SIZE
from .vit_reference import IMAGENET_MEAN, IMAGENET_STD
from .zoo_props import check_properties


@pytest.fixture(scope="module")
def metric(tiny_dinov2_path):
    return create_metric(
        "dinov2", model=tiny_dinov2_path, device="cpu", dtype="float32", size=VIT_SIZE, resize=VIT_SIZE
    )


@pytest.fixture()
def imgs():
    return torch.rand(3, 3, VIT_SIZE, VIT_SIZE, generator=torch.Generator().manual_seed(6))


def test_properties(metric, imgs):
    check_properties(metric, imgs)


def test_reference_cls(metric, imgs):
    x = (imgs - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        cls = metric.backbone.model(pixel_values=x).last_hidden_state[:, 0]
    want = torch.nn.functional.cosine_similarity(cls[:1], cls[1:])
    assert torch.allclose(metric.compare(metric.embed(imgs[0]), metric.embed(imgs[1:])), want, atol=1e-5)


def test_shares_backbone_and_caches(tiny_dinov2_path, metric, imgs):
    aas = create_metric("dinov2-aas", model=tiny_dinov2_path, device="cpu", dtype="float32", size=VIT_SIZE)
    assert aas.backbone is metric.backbone
    before = metric.backbone.forward_calls
    metric.embed(imgs)
    metric.embed([imgs[0], imgs[0]])
    assert metric.backbone.forward_calls - before <= 1  # second call served by the cache
