"""DINOv3 AAS and DINOv3 CLS cosine on a tiny random DINOv3ViTModel (real classes, save_pretrained /
from_pretrained): parity with a float64 reference that applies RoPE itself, token layout, preprocessing."""

from __future__ import annotations

import pytest
import torch

from diffsim import ConfigError, ModelNotFoundError, create_metric
from diffsim.functional.scores import vit_aas

from .tiny_vit import VIT_SIZE
from .vit_reference import IMAGENET_MEAN, IMAGENET_STD, aas_score, cos

CPU = {"device": "cpu", "dtype": "float32", "size": VIT_SIZE}


@pytest.fixture(scope="module")
def metric(tiny_dinov3_path):
    return create_metric("dinov3-aas", model=tiny_dinov3_path, **CPU)


@pytest.fixture()
def imgs():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, VIT_SIZE, VIT_SIZE, generator=g)
    x[1] = 0.7 * x[0] + 0.3 * x[1]
    return x


@pytest.mark.parametrize("qkv_input,out_proj", [("normed", False), ("residual", True)])
@pytest.mark.parametrize("layer", [0, -1])
def test_parity_with_reference(metric, imgs, qkv_input, out_proj, layer):
    m = metric.with_settings(layer=layer, qkv_input=qkv_input, out_proj=out_proj)
    got = m.compare_matrix(m.embed(imgs[:2]), m.embed(imgs[2]))[:, 0]
    model = m.backbone.model
    want = torch.tensor(
        [aas_score(model, "dinov3", imgs[i], imgs[2], m.layer, qkv_input, out_proj) for i in (0, 1)],
        dtype=torch.float64,
    )
    assert torch.allclose(got.double(), want, atol=1e-5), (got, want)
    near = m.score(imgs[0], imgs[1])
    assert abs(near - aas_score(model, "dinov3", imgs[0], imgs[1], m.layer, qkv_input, out_proj)) < 1e-5
    assert float(want.max() - want.min()) > 1e-3 or near - float(want.min()) > 1e-2  # scores spread out


def test_rope_is_applied_and_prefix_tokens_are_kept(metric, imgs):
    """Q/K of the patch tokens carry the rotation; CLS and the 2 register tokens do not; all are scored."""
    bb = metric.backbone
    cap = bb.capture(imgs[:1], metric.layer)
    f = bb.qkv(cap, metric.layer)
    assert f.q.shape[-2] == 1 + 2 + (VIT_SIZE // 8) ** 2  # CLS + registers + patches
    _, q, _, _, _, heads = bb._parts(metric.layer)
    raw = q(bb._parts(metric.layer)[0](cap.residual)).view(1, -1, heads, 8).transpose(1, 2)
    assert torch.allclose(f.q[:, :, :3], raw[:, :, :3])  # prefix tokens unrotated
    assert not torch.allclose(f.q[:, :, 3:], raw[:, :, 3:], atol=1e-3)  # patch tokens rotated


def test_cls_cosine_matches_reference(tiny_dinov3_path, imgs):
    m = create_metric("dinov3", model=tiny_dinov3_path, **CPU)
    model = m.backbone.model
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        cls = model(pixel_values=(imgs - mean) / std).last_hidden_state[:, 0]  # CLS after the final norm
    got = m.matrix(imgs)
    assert abs(float(got[0, 2]) - cos(cls[0], cls[2])) < 1e-5 and abs(float(got[0, 1]) - cos(cls[0], cls[1])) < 1e-5


def test_preprocessing_is_the_processor_view(metric):
    # DINOv3's processor shows the model a 224 x 224 view: no 256/224 enlargement (DINOv2) by default
    assert metric.resize == VIT_SIZE
    assert metric.with_settings(size=224).resize == 224
    img = torch.rand(3, 48, 64, generator=torch.Generator().manual_seed(0))
    assert metric.embed(img).tensors["q"].shape[-2] == 19


def test_differentiable_path_equals_cached_scores(metric, imgs):
    got = vit_aas(imgs[:2], imgs[2:3].expand(2, -1, -1, -1), metric.backbone, metric.layer, size=VIT_SIZE)
    want = metric.compare_matrix(metric.embed(imgs[:2]), metric.embed(imgs[2]))[:, 0]
    assert torch.allclose(got, want, atol=1e-6)
    x = imgs[:1].clone().requires_grad_(True)
    metric.as_loss()(x, imgs[2:3]).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_family_mismatch_and_missing_weights(tiny_dinov2_path, monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="is a dinov2 model, not dinov3"):
        create_metric("dinov3-aas", model=tiny_dinov2_path, **CPU)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="facebook/dinov3-vits16-pretrain-lvd1689m.*HF_HUB_OFFLINE"):
        create_metric("dinov3", device="cpu")
