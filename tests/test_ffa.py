"""FFA on a tiny random DINOv2: masked patch average by hand, mask handling, fallback warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from diffsim import ImageError, create_metric

from .tiny_vit import VIT_SIZE


@pytest.fixture(scope="module")
def metric(tiny_dinov2_path):
    return create_metric("ffa", model=tiny_dinov2_path, device="cpu", dtype="float32", size=VIT_SIZE)


@pytest.fixture()
def imgs():
    return torch.rand(3, 3, VIT_SIZE, VIT_SIZE, generator=torch.Generator().manual_seed(8))


def test_masked_average_by_hand(metric, imgs):
    mask = np.zeros((VIT_SIZE, VIT_SIZE), np.uint8)
    mask[:16, :16] = 255  # top-left quadrant = patches (0,0),(0,1),(1,0),(1,1) of the 4 x 4 grid
    f = metric.embed(imgs[:2], masks=[mask, None])
    p = f.tensors["patches"]
    keep = [0, 1, 4, 5]
    want0 = p[0, keep].mean(0)
    assert torch.allclose(f.tensors["foreground"][0], want0, atol=1e-6)
    assert torch.allclose(f.tensors["foreground"][1], p[1].mean(0), atol=1e-6)  # no mask: all patches
    got = float(metric.compare(f[0], f[1])[0])
    want = float(torch.nn.functional.cosine_similarity(want0, p[1].mean(0), dim=0))
    assert abs(got - want) < 1e-5
    # masking changes the score (the test would catch masks being ignored)
    plain = metric.embed(imgs[:2])
    assert abs(float(metric.compare(plain[0], plain[1])[0]) - got) > 1e-4


def test_fallback_warning_and_identity(metric, imgs, caplog):
    with caplog.at_level(logging.WARNING, logger="diffsim"):
        f = metric.embed(imgs[0])
    assert "no foreground mask" in caplog.text
    assert abs(float(metric.compare(f, f)[0]) - 1) < 1e-5


def test_mask_errors(metric, imgs):
    with pytest.raises(ImageError, match="2 masks for 3 images"):
        metric.embed(imgs, masks=[None, None])
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        metric.embed(imgs[0], masks=torch.full((VIT_SIZE, VIT_SIZE), 2.0))
    with pytest.raises(ImageError, match="not found"):
        metric.embed(imgs[0], masks="/nonexistent/mask.png")
