"""CLIP AAS on a tiny random CLIP saved with save_pretrained and loaded through the real path."""

from __future__ import annotations

import pytest
import torch

from diffsim import ConfigError, LayerError, create_metric
from diffsim.metrics.vit_aas import CLIPAAS

from .tiny_vit import VIT_SIZE
from .vit_reference import aas_score
from .zoo_props import check_properties


@pytest.fixture(scope="module")
def metric(tiny_clip_path):
    return CLIPAAS.from_pretrained(tiny_clip_path, device="cpu", dtype="float32", size=VIT_SIZE)


@pytest.fixture()
def imgs():
    return torch.rand(3, 3, VIT_SIZE, VIT_SIZE, generator=torch.Generator().manual_seed(1))


def test_properties(metric, imgs):
    check_properties(metric, imgs)


@pytest.mark.parametrize(
    "qkv_input,out_proj", [("normed", False), ("residual", True), ("residual", False), ("normed", True)]
)
@pytest.mark.parametrize("layer", [0, -1])
def test_parity_with_reference(metric, imgs, qkv_input, out_proj, layer):
    from transformers import CLIPVisionModelWithProjection

    m = metric.with_settings(layer=layer, qkv_input=qkv_input, out_proj=out_proj, size=VIT_SIZE)
    got = m.compare(m.embed(imgs[0]), m.embed(imgs[1:]))
    model = m.backbone.model
    assert isinstance(model, CLIPVisionModelWithProjection)
    want = [aas_score(model, "clip", imgs[0], imgs[j], m.layer, qkv_input, out_proj) for j in (1, 2)]
    assert torch.allclose(got.double(), torch.tensor(want, dtype=torch.float64), atol=1e-5)


def test_variants_differ(metric, imgs):
    base = metric.with_settings()
    authors = metric.with_settings(qkv_input="residual", out_proj=True, size=VIT_SIZE)
    sa = base.score(imgs[0], imgs[1])
    sb = authors.score(imgs[0], imgs[1])
    assert abs(sa - sb) > 1e-4


def test_registry_and_errors(tiny_clip_path, metric, imgs):
    m = create_metric("clip-aas", model=tiny_clip_path, device="cpu", dtype="float32", size=VIT_SIZE)
    assert m.backbone is metric.backbone  # one loaded model shared
    assert m.layer == 2 and m.higher_is_better
    with pytest.raises(LayerError, match=r"\[-3, 2\]"):
        metric.with_settings(layer=3)
    with pytest.raises(ConfigError, match="qkv_input"):
        metric.with_settings(qkv_input="post")
    other = metric.with_settings(layer=0, size=VIT_SIZE)
    with pytest.raises(ConfigError, match="layer"):
        metric.compare(metric.embed(imgs[0]), other.embed(imgs[1]))
