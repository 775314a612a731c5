"""DINOv2 AAS on a tiny random Dinov2Model (real classes, save_pretrained / from_pretrained)."""

from __future__ import annotations

import pytest
import torch

from diffsim import ModelNotFoundError, create_metric
from diffsim.metrics.vit_aas import DINOv2AAS

from .tiny_vit import VIT_SIZE
from .vit_reference import aas_score
from .zoo_props import check_properties


@pytest.fixture(scope="module")
def metric(tiny_dinov2_path):
    return DINOv2AAS.from_pretrained(tiny_dinov2_path, device="cpu", dtype="float32", size=VIT_SIZE, resize=VIT_SIZE)


@pytest.fixture()
def imgs():
    return torch.rand(3, 3, VIT_SIZE, VIT_SIZE, generator=torch.Generator().manual_seed(2))


def test_properties(metric, imgs):
    check_properties(metric, imgs)


@pytest.mark.parametrize("qkv_input,out_proj", [("normed", False), ("residual", True)])
@pytest.mark.parametrize("layer", [1, -1])
def test_parity_with_reference(metric, imgs, qkv_input, out_proj, layer):
    m = metric.with_settings(layer=layer, qkv_input=qkv_input, out_proj=out_proj, size=VIT_SIZE, resize=VIT_SIZE)
    got = m.compare_matrix(m.embed(imgs[:2]), m.embed(imgs[2]))[:, 0]
    want = [aas_score(m.backbone.model, "dinov2", imgs[i], imgs[2], m.layer, qkv_input, out_proj) for i in (0, 1)]
    assert torch.allclose(got.double(), torch.tensor(want, dtype=torch.float64), atol=1e-5)


def test_preprocessing_resize_then_crop(metric):
    # a 64 x 48 image: shortest side -> 36, centre crop 32 (default resize for DINOv2 is 256/224 * size)
    m = metric.with_settings(resize=None)
    assert m.resize == 36
    img = torch.rand(3, 48, 64, generator=torch.Generator().manual_seed(0))
    f = m.embed(img)
    assert f.tensors["q"].shape[-2] == 17


def test_missing_weights_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="facebook/dinov2-base.*HF_HUB_OFFLINE"):
        create_metric("dinov2-aas", model="facebook/dinov2-base", device="cpu")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        create_metric("dinov2-aas", model=str(tmp_path / "nope"), device="cpu")
