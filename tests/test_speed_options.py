"""Speed options keep the scores: channels_last, inference_mode, compare_dtype; option validation."""

from __future__ import annotations

import itertools

import pytest
import torch

from diffsim import DiffSim, StableDiffusionBackbone
from diffsim.backbones.unet_forward import ExplicitRunner
from diffsim.errors import ConfigError

from .conftest import SIZE


def _load(path, **kw):
    return DiffSim.from_pretrained(
        path, size=SIZE, device="cpu", dtype="float32", cache_bytes=0, layer=["down1", "up0"], **kw
    )


def test_inference_mode_gives_the_same_features(tiny_sd_path, image_files):
    base = _load(tiny_sd_path)
    inf = _load(tiny_sd_path, inference_mode=True)
    assert inf.backbone is not base.backbone and inf.backbone.inference_mode
    fa, fb = base.embed(image_files[:3]), inf.embed(image_files[:3])
    for k in fa.tensors:  # oneDNN may pick other kernels under inference mode: float32 rounding only
        assert torch.allclose(fa.tensors[k], fb.tensors[k], atol=1e-5, rtol=1e-5), k
    assert torch.allclose(inf.compare_matrix(fb, fb, "up0"), base.compare_matrix(fa, fa, "up0"), atol=1e-6)
    cached = DiffSim.from_pretrained(tiny_sd_path, size=SIZE, device="cpu", dtype="float32", inference_mode=True)
    assert cached.score(image_files[0], image_files[1]) == pytest.approx(
        base.with_settings(layer="up0").score(image_files[0], image_files[1]), abs=1e-6
    )  # oneDNN kernels under inference mode: float32 rounding (seen 1.2e-7 after other tests ran)
    assert cached.score(image_files[0], image_files[1]) == cached.score(image_files[0], image_files[1])  # from cache


def test_channels_last_unet_matches(tiny_sd_path, image_files):
    base = _load(tiny_sd_path)
    cl = _load(tiny_sd_path, channels_last=True)
    assert cl.backbone.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    fa, fb = base.embed(image_files[:2]), cl.embed(image_files[:2])
    for k in fa.tensors:
        assert torch.allclose(fa.tensors[k], fb.tensors[k], atol=1e-5, rtol=1e-4), k
    assert cl.backbone.runner is None and base.backbone.runner is None  # the hook path unless compile= selects one


def test_half_precision_compare_stays_close_and_keeps_decisions(tiny_metric, image_files):
    feats = tiny_metric.embed(image_files)
    ref = tiny_metric.compare_matrix(feats, feats)
    half = tiny_metric.with_settings(compare_dtype="float16")
    assert half.config["compare_dtype"] == "float16" and tiny_metric.config["compare_dtype"] is None
    assert (half.compare_matrix(feats, feats) - ref).abs().max() < 1e-3
    assert (half.compare(feats[0], feats[1:]) - tiny_metric.compare(feats[0], feats[1:])).abs().max() < 1e-3
    for r, a, b in itertools.permutations(range(len(image_files)), 3):
        assert half.decide(feats[r], feats[a], feats[b]) == tiny_metric.decide(feats[r], feats[a], feats[b])
    assert not torch.equal(half.compare_matrix(feats, feats), ref)  # it really ran in half precision
    with pytest.raises(ConfigError, match="dtype"):
        tiny_metric.with_settings(compare_dtype="int8")


def test_option_validation_and_sharing(tiny_sd_path):
    with pytest.raises(ConfigError, match="compile must be"):
        StableDiffusionBackbone.from_pretrained(tiny_sd_path, device="cpu", compile="fastest")
    a = StableDiffusionBackbone.from_pretrained(tiny_sd_path, device="cpu", dtype="float32")
    b = StableDiffusionBackbone.from_pretrained(tiny_sd_path, device="cpu", dtype="float32", compile=True)
    assert a is not b and a.compile is None and b.compile == "default"
    assert a.runner is None and isinstance(b.runner, ExplicitRunner) and b.runner.mode == "default"
    assert StableDiffusionBackbone.from_pretrained(tiny_sd_path, device="cpu", dtype="float32") is a


def test_reduced_precision_model_noises_in_float32(tiny_sd_path, rand_images):
    bb = StableDiffusionBackbone.from_pretrained(tiny_sd_path, device="cpu", dtype="bfloat16")
    z0 = bb.encode(rand_images * 2 - 1, seed=3)
    assert z0.dtype == torch.float32
    out = bb.extract_latents(z0, bb.resolve(["up0"]), 501, "", 3)
    q = next(iter(out.values())).q
    assert q.dtype == torch.bfloat16 and torch.isfinite(q.float()).all()
