"""CLIP and DINOv2 feature ablations: reference features by hand (hidden_states / explicit softmax)."""

from __future__ import annotations

import pytest
import torch

from diffsim import create_metric

from .tiny_vit import VIT_SIZE
from .vit_reference import attention, cos, layer_output, qkv
from .zoo_props import check_properties


@pytest.fixture()
def imgs():
    return torch.rand(3, 3, VIT_SIZE, VIT_SIZE, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize(
    "family,layer,feature",
    [("clip", -1, "output"), ("clip", 0, "attention"), ("dinov2", -1, "attention"), ("dinov2", 1, "output")],
)
def test_reference(tiny_clip_path, tiny_dinov2_path, imgs, family, layer, feature):
    path = tiny_clip_path if family == "clip" else tiny_dinov2_path
    m = create_metric(
        f"{family}-feat",
        model=path,
        device="cpu",
        dtype="float32",
        size=VIT_SIZE,
        resize=VIT_SIZE,
        layer=layer,
        feature=feature,
    )
    check_properties(m, imgs)
    model = m.backbone.model

    def feat(u):
        if feature == "output":
            return layer_output(model, family, u, m.layer)
        return attention(*qkv(model, family, u, m.layer, "normed"))

    want = cos(feat(imgs[0]), feat(imgs[1]))
    assert abs(m.score(imgs[0], imgs[1]) - want) < 1e-5


def test_defaults_follow_the_authors(tiny_clip_path, tiny_dinov2_path):
    assert create_metric("clip-feat", model=tiny_clip_path, device="cpu", size=VIT_SIZE).feature == "output"
    assert create_metric("dinov2-feat", model=tiny_dinov2_path, device="cpu", size=VIT_SIZE).feature == "attention"
