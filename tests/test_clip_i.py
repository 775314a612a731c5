"""CLIP-I on a tiny random CLIPModel checkpoint: reference embedding by hand, properties, scale."""

from __future__ import annotations

import pytest
import torch

from diffsim import create_metric

from .tiny_vit import VIT_SIZE
from .vit_reference import CLIP_MEAN, CLIP_STD
from .zoo_props import check_properties


@pytest.fixture(scope="module")
def metric(tiny_clip_path):
    return create_metric("clip-i", model=tiny_clip_path, device="cpu", dtype="float32", size=VIT_SIZE)


@pytest.fixture()
def imgs():
    return torch.rand(3, 3, VIT_SIZE, VIT_SIZE, generator=torch.Generator().manual_seed(5))


def test_properties(metric, imgs):
    check_properties(metric, imgs)


def test_matches_clipmodel_image_features(tiny_clip_path, metric, imgs):
    from transformers import CLIPModel

    full = CLIPModel.from_pretrained(tiny_clip_path).eval()
    x = (imgs - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        e = full.get_image_features(pixel_values=x)
        e = getattr(e, "pooler_output", e)
    e = e / e.norm(dim=-1, keepdim=True)
    want = e[0] @ e[1:].T
    got = metric.compare(metric.embed(imgs[0]), metric.embed(imgs[1:]))
    assert torch.allclose(got, want, atol=1e-5)
    scaled = create_metric("clip-i", model=tiny_clip_path, device="cpu", dtype="float32", size=VIT_SIZE, scale=100)
    assert abs(scaled.score(imgs[0], imgs[1]) - 100 * float(want[0])) < 1e-3
