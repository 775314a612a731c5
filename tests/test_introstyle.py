"""IntroStyle on the tiny SD pipeline (real diffusers classes, save_pretrained / from_pretrained): parity with a
float64 reference written from the method, the up-block capture, the differentiable path, settings errors."""

from __future__ import annotations

import pytest
import torch

from diffsim import ConfigError, LayerError, create_metric
from diffsim.errors import TimestepError

from .introstyle_reference import style_vector, w2

SIZE = 128
CPU = {"device": "cpu", "dtype": "float32", "size": SIZE}


@pytest.fixture(scope="module")
def metric(tiny_sd_path):
    return create_metric("introstyle", model=str(tiny_sd_path), ensemble=2, **CPU)


@pytest.fixture(scope="module")
def small(metric):
    """The same metric at 64 px with one noise draw (the cheaper checks)."""
    return metric.with_settings(size=64, ensemble=1)


@pytest.fixture(scope="module")
def pipe(tiny_sd_path):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(tiny_sd_path), safety_checker=None).to(torch.float32)


@pytest.fixture(scope="module")
def imgs():
    g = torch.Generator().manual_seed(5)
    low = torch.rand(3, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bicubic", align_corners=False).clamp(0, 1)
    x[1] = 0.7 * x[0] + 0.3 * x[1]  # a near neighbour of image 0
    return x


@pytest.fixture(scope="module")
def small_imgs(imgs):
    return torch.nn.functional.interpolate(imgs, size=(64, 64), mode="bilinear", antialias=True).clamp(0, 1)


@pytest.mark.parametrize("block,timestep", [(1, 25), (2, 400)])
def test_parity_with_reference(metric, pipe, imgs, block, timestep):
    m = metric.with_settings(up_block=block, timestep=timestep)
    got = m.matrix(imgs)
    s = m.settings
    vec = [style_vector(pipe, imgs[i] * 2 - 1, block, timestep, s.prompt, s.seed, s.ensemble) for i in range(3)]
    want = torch.tensor([[w2(vec[i], vec[j]) for j in range(3)] for i in range(3)], dtype=torch.float64)
    assert torch.allclose(got.double(), want, atol=1e-5), (got, want)
    assert want[0, 1] < 0.8 * want[0, 2] and want[0, 2] > 1e-2  # spread: the blend is clearly closer


def test_features_are_the_up_block_statistics(metric, imgs):
    f = metric.embed(imgs[:1])
    channels = metric.backbone.denoiser_config.block_out_channels[-2]  # up_blocks.1 of the tiny U-Net
    assert set(f.tensors) == {"mean", "std"} and f.tensors["mean"].shape == (1, channels)
    assert metric.config["block"] == "up_blocks.1" and metric.config["timestep"] == 25
    assert metric.higher_is_better is False


def test_extract_outputs_both_branches_and_early_stop(small, small_imgs):
    bb = small.backbone.real()
    px = small_imgs[:2] * 2 - 1
    before = bb.passes
    out = bb.extract_outputs(px, ["up_blocks.1", "up_blocks.0"], 25, "a photo of", 7, branches=2)
    assert bb.passes == before + 1
    assert out["up_blocks.1"].shape[:2] == (2, 2) and out["up_blocks.0"].shape[:2] == (2, 2)
    one = bb.extract_outputs(px, ["up_blocks.1"], 25, "a photo of", 7, branches=1)["up_blocks.1"]
    assert torch.allclose(one[:, 0], out["up_blocks.1"][:, 1], atol=1e-5)  # branch 1 is the prompt branch


def test_differentiable_path_equals_cached_scores(small, small_imgs):
    want = small.compare(small.embed(small_imgs[:2]), small.embed(small_imgs[[2, 0]]))
    x = small_imgs[:2].clone().requires_grad_(True)
    got = small.differentiable_scores(x, small_imgs[[2, 0]])
    assert torch.allclose(got, want, atol=1e-5)
    got.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    same = small_imgs[:1].clone().requires_grad_(True)
    small.differentiable_scores(same, small_imgs[:1]).sum().backward()  # distance 0: a zero gradient, not NaN
    assert torch.isfinite(same.grad).all()


@pytest.mark.parametrize(
    "over,err,match",
    [
        ({"up_block": 4}, LayerError, r"up_block must be in \[0, 3\]"),
        ({"up_block": -1}, LayerError, "non-negative"),
        ({"timestep": 1000}, TimestepError, "out of range"),
        ({"ensemble": 0}, ConfigError, "ensemble"),
        ({"crop": "left"}, ConfigError, "crop"),
    ],
)
def test_bad_settings(metric, over, err, match):
    with pytest.raises(err, match=match):
        metric.with_settings(**over)


def test_gradient_checkpointing_gives_the_same_gradient(small, small_imgs):
    grads = []
    for ckpt in (False, True):
        x = small_imgs[:1].clone().requires_grad_(True)
        small.differentiable_scores(x, small_imgs[2:3], checkpoint=ckpt).sum().backward()
        grads.append(x.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_prompt_per_call_changes_features_and_cache_key(small, small_imgs):
    a = small.embed(small_imgs[:1])
    b = small.embed(small_imgs[:1], prompt="an oil painting")
    assert b.config["prompt"] == "an oil painting" and a.config["prompt"] == "a photo of"
    assert not torch.allclose(a.tensors["mean"], b.tensors["mean"])
    same = small.with_settings(prompt="an oil painting").embed(small_imgs[:1])
    assert torch.equal(same.tensors["mean"], b.tensors["mean"])


def test_another_model_kind_names_the_fitting_metric(tiny_sdxl_path):
    with pytest.raises(ConfigError, match="diffsim-s-sdxl"):
        create_metric("introstyle", model=str(tiny_sdxl_path), **CPU)


def test_as_loss_is_the_distance(small, small_imgs):
    from diffsim.registry import differentiable_metrics

    assert "introstyle" in differentiable_metrics() and "dinov3-aas" in differentiable_metrics()
    loss = small.as_loss(reduction="none")
    x = small_imgs[:2].clone().requires_grad_(True)
    out = loss(x, small_imgs[[2, 0]])
    want = small.compare(small.embed(small_imgs[:2]), small.embed(small_imgs[[2, 0]]))
    assert torch.allclose(out, want, atol=1e-5)  # a distance: the loss is the distance itself
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
