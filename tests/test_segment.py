"""Automatic foreground masks: a tiny random CLIPSeg loaded through the real path, and masks="auto" in metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffsim import ConfigError, ModelNotFoundError, create_metric
from diffsim.segment import ForegroundSegmenter

from .test_diffsim_mask import fixture_triplet
from .tiny_clipseg import build_tiny_clipseg
from .tiny_vit import VIT_SIZE


@pytest.fixture(scope="module")
def seg_path(tmp_path_factory):
    return build_tiny_clipseg(tmp_path_factory.mktemp("tiny-clipseg") / "model")


@pytest.fixture(scope="module")
def seg(seg_path):
    return ForegroundSegmenter.from_pretrained(seg_path, device="cpu", dtype="float32")


def _imgs(n: int, side: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def test_masks_sizes_range_determinism_batch(seg, seg_path, image_files):
    t = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(1))
    pil = Image.fromarray((np.random.default_rng(2).uniform(0, 255, (20, 30, 3))).astype(np.uint8))
    images = [t, pil, image_files[0]]
    masks = seg.segment(images)
    assert [tuple(m.shape) for m in masks] == [(40, 56), (20, 30), (72, 80)]
    assert all(m.dtype == torch.float32 and m.min() >= 0 and m.max() <= 1 and m.std() > 0 for m in masks)
    again = seg.segment(images)
    assert all(torch.equal(a, b) for a, b in zip(masks, again, strict=False))
    for i, im in enumerate(images):  # a batch gives each image's own mask
        assert torch.allclose(seg.segment(im)[0], masks[i], atol=1e-5)
    per_image = seg.segment(images, ["a cat", "the main object", "hi"])
    assert torch.allclose(per_image[1], masks[1], atol=1e-5)
    assert (per_image[0] - masks[0]).abs().max() > 1e-3 and (per_image[2] - masks[2]).abs().max() > 1e-3
    assert ForegroundSegmenter.from_pretrained(seg_path, device="cpu", dtype="float32") is seg  # shared
    long = seg.segment(images[1], "a very long prompt " * 20)[0]  # truncated to the text model's length
    assert long.shape == (20, 30) and not long.requires_grad
    with pytest.raises(ConfigError, match="one string per image"):
        seg.segment(images, ["a", "b"])


def test_ffa_auto_equals_explicit(tiny_dinov2_path, seg_path, seg):
    kw = dict(model=tiny_dinov2_path, mask_model=seg_path, device="cpu", dtype="float32", size=VIT_SIZE)
    ffa = create_metric("ffa", **kw)
    imgs = _imgs(3, VIT_SIZE, 3)
    prompts = ["a cat", "a dog", "hi"]
    auto = ffa.embed(imgs, masks="auto", mask_prompt=prompts)
    explicit = ffa.embed(imgs, masks=seg.segment(imgs, prompts))
    assert torch.equal(auto.tensors["foreground"], explicit.tensors["foreground"])
    assert not torch.equal(auto.tensors["foreground"], ffa.embed(imgs).tensors["foreground"])  # masks matter
    mixed = ffa.embed(imgs, masks=["auto", None, "auto"], mask_prompt=prompts)
    assert torch.equal(mixed.tensors["mask"][[0, 2]], auto.tensors["mask"][[0, 2]])
    assert bool(mixed.tensors["mask"][1].all())
    by_default = create_metric("ffa", auto_masks=True, mask_prompt=prompts, **kw)
    assert by_default.config["mask_model"] == str(seg_path) and by_default.config["auto_masks"]
    assert not ffa.config["auto_masks"]
    assert torch.equal(by_default.embed(imgs).tensors["foreground"], auto.tensors["foreground"])


def test_diffsim_auto_equals_explicit(tiny_metric, seg_path, seg):
    m = tiny_metric.with_settings(mask_model=seg_path, layer="up2")
    imgs = fixture_triplet()[0][:2]  # one subject on two busy backgrounds
    plain = m.embed(imgs)
    calls = m.backbone.passes
    auto = m.embed(imgs, masks="auto", mask_prompt="a cat")
    explicit = m.embed(imgs, masks=seg.segment(imgs, "a cat"))
    assert m.backbone.passes == calls  # masks are attached after the cached network features
    s_auto, s_explicit = m.compare(auto[0], auto[1]), m.compare(explicit[0], explicit[1])
    assert torch.equal(s_auto, s_explicit)
    key = f"{m.layers[0]}/mask"
    assert torch.equal(auto.tensors[key], explicit.tensors[key]) and key not in plain.tensors
    assert auto.tensors[key].std() > 0  # soft token weights from the segmenter, not all ones
    assert abs(m.score(imgs[0], imgs[1], masks="auto", mask_prompt="a cat") - float(s_auto[0])) < 1e-5


def test_missing_model_errors(tmp_path, monkeypatch, tiny_dinov2_path):
    with pytest.raises(ModelNotFoundError, match="does not exist.*save_pretrained"):
        ForegroundSegmenter.from_pretrained("/nonexistent/clipseg", device="cpu")
    with pytest.raises(ModelNotFoundError, match="could not load the segmentation model folder"):
        ForegroundSegmenter.from_pretrained(tmp_path, device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE=1.*mask_model='/path"):
        ForegroundSegmenter.from_pretrained("nobody/no-such-clipseg", device="cpu")
    ffa = create_metric(
        "ffa", model=tiny_dinov2_path, mask_model="/nonexistent/clipseg", device="cpu", dtype="float32", size=VIT_SIZE
    )  # the segmenter loads on first use only
    with pytest.raises(ModelNotFoundError, match="/nonexistent/clipseg"):
        ffa.embed(_imgs(1, VIT_SIZE, 5), masks="auto")
