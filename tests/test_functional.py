"""The functional core: same scores as the cached path on the same pixels, and correct gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffsim import ConfigError, ImageError
from diffsim import functional as DF
from diffsim.images import to_unit_resized, to_unit_tensor

from .tiny_loss import GRADCHECK, KINDS, build, float64_copy, gradcheck_ok, working_size

# DiffSim-C's adapter image encoder reads uint8-rounded, uint8-resampled pixels (the pipeline's CLIP
# processor) on the cached path and float pixels on the functional one; every other metric sees the same pixels
TOLERANCE = {"diffsim-c": 2e-2}  # measured on the tiny model: mean 7e-3, max 1.1e-2 (docs/loss.md)


@pytest.fixture(scope="module", params=KINDS)
def metric(request):
    return build(request.param, request)


def _pair(metric, n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    s = working_size(metric)
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(2 * n, 3, 4, 4, generator=g)  # smooth images: scores spread on the tiny models
    x = torch.nn.functional.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
    x = (x + 0.05 * torch.rand(x.shape, generator=g)).clamp(0, 1)
    return x[:n], x[n:]


def test_functional_equals_cached_score_on_the_same_pixels(metric):
    x, y = _pair(metric)
    cached = metric.score(x, y)
    with torch.no_grad():
        got = metric.differentiable_scores(x, y)
    assert got.shape == (2,) and got.dtype == torch.float32
    tol = TOLERANCE.get(metric.name, 1e-6)
    assert torch.allclose(got, cached, atol=tol, rtol=0), (metric.name, got, cached)
    assert not torch.allclose(got[0], got[1], atol=1e-6)  # two different pairs: different scores


def test_functional_leaves_the_feature_cache_alone(metric):
    x, y = _pair(metric, seed=5)
    before = (len(metric.cache), metric.cache.hits, metric.cache.misses)
    metric.differentiable_scores(x, y)
    assert (len(metric.cache), metric.cache.hits, metric.cache.misses) == before
    metric.score(x, y)  # the cached path does use it (so the check above can fail)
    assert len(metric.cache) == before[0] + 4


def test_one_image_broadcasts_and_bad_counts_fail(metric):
    x, y = _pair(metric, n=3)
    with torch.no_grad():
        one = metric.differentiable_scores(x[:1], y)
        each = torch.cat([metric.differentiable_scores(x[:1], y[i : i + 1]) for i in range(3)])
    assert torch.allclose(one, each, atol=1e-5)
    with pytest.raises(ImageError, match="cannot pair 3 images with 2"):
        metric.differentiable_scores(x, y[:2])


def test_gradient_matches_finite_differences_in_float64(metric):
    """d/de score(x + e v, y) by central differences against <grad_x, v> (float64 copy of the model); a kind
    whose float64 copy computes partly in float32 (``TinyBackbone.gradcheck``) gets a coarse step."""
    exact = gradcheck_ok(metric)
    m64 = float64_copy(metric)
    # pixels away from 0 and 1: the resizes clip to [0, 1] (as the cached path does), a kink at saturated pixels
    x, y = (0.1 + 0.8 * t.double() for t in _pair(metric, n=1, seed=2))
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    v = v / v.norm()  # a unit step: small enough not to cross ReLU / max-pool kinks (LPIPS)
    xr = x.clone().requires_grad_(True)
    m64.differentiable_scores(xr, y).sum().backward()
    analytic = float((xr.grad * v).sum())
    eps, rel = (1e-6, 1e-4) if exact else (1e-3, 1e-2)
    with torch.no_grad():
        hi, lo = m64.differentiable_scores(x + eps * v, y), m64.differentiable_scores(x - eps * v, y)
    numeric = float((hi - lo).sum()) / (2 * eps)
    assert abs(analytic) > 1e-7, metric.name  # a real gradient, not a detached zero
    assert analytic == pytest.approx(numeric, rel=rel, abs=1e-9), metric.name


def test_gradcheck_through_resize_vae_and_truncated_unet(request):
    """Full torch.autograd.gradcheck (both inputs) on the tiny SD in float64: 2 x 2 images upsampled on device."""
    m64 = float64_copy(build("sd", request))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 3, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    bb = m64.backbone

    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return DF.diffsim_s(a, b, bb, "up1", timestep=m64.timestep, size=64, seed=m64.seed)

    assert torch.autograd.gradcheck(f, (x, y), eps=1e-6, atol=1e-8, rtol=1e-5)
    # the check can fail: a gradient that skips the second image's path does not pass
    broken = lambda a, b: f(a, b.detach() + (b - b.detach()) * 0.5)  # noqa: E731
    assert not torch.autograd.gradcheck(
        broken, (x, y), eps=1e-6, atol=1e-8, rtol=1e-5, fast_mode=True, raise_exception=False
    )


@pytest.mark.parametrize("kind", [k for k in GRADCHECK if k != "sd"])  # SD: the full check above
def test_gradcheck_fast_mode_every_kind(kind, request):
    m64 = float64_copy(build(kind, request))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: m64.differentiable_scores(a, b), (x, y), eps=1e-6, atol=1e-8, rtol=1e-4, fast_mode=True
    )


# ------------------------------------------------------------------------------------------------ resize
def _smooth(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 6, 6, generator=g)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)[0]


@pytest.mark.parametrize(("shape", "size"), [((96, 80), 64), ((50, 70), 64), ((64, 64), 224), ((300, 280), 512)])
def test_resize_square_gives_pillows_lanczos_pixels(shape, size):
    x = _smooth(*shape)
    for crop in ("none", "center"):
        ours = DF.resize_square(x[None], size, crop)[0]
        pil = to_unit_tensor(x, size, crop)  # the cached path: Pillow, mode "F", one channel at a time
        assert ours.shape == pil.shape == (3, size, size)
        assert float((ours - pil).abs().max()) < 1e-6, (shape, size, crop)
        # torch's antialiased bicubic is another filter: close, not equal (docs/loss.md has the numbers)
        bic = DF.resize_square(x[None], size, crop, method="bicubic")[0]
        assert 1e-5 < float((bic - pil).abs().mean()) < 5e-3
    assert DF.resize_square(x[None, :, :40, :40], 40)[0].equal(x[:, :40, :40])  # at size: untouched
    with pytest.raises(ConfigError, match="method must be one of lanczos, bicubic"):
        DF.resize_square(x[None], 32, method="area")


def test_functional_equals_cached_score_when_resizing_too(request):
    metric = build("sd", request)
    x, y = _smooth(96, 80, seed=1), _smooth(72, 88, seed=2)
    with torch.no_grad():
        got = metric.differentiable_scores(x[None], y[None])
    assert abs(float(got[0]) - metric.score(x, y)) < 2e-6


def test_resize_crop_is_the_cached_float_tensor_path():
    x = _smooth(50, 70)
    assert torch.allclose(DF.resize_crop(x[None], 36, 32)[0], to_unit_resized(x, 36, 32), atol=1e-6)


def test_resize_runs_on_uint8_files_decoded_the_same_way():
    arr = (np.asarray(_smooth(40, 40).permute(1, 2, 0)) * 255).round().astype(np.uint8)
    x = torch.from_numpy(arr).permute(2, 0, 1).float()[None] / 255
    assert DF.resize_square(x, 40)[0].equal(to_unit_tensor(Image.fromarray(arr), 40))


def test_bad_tensors_name_what_was_expected(tiny_metric):
    with pytest.raises(ImageError, match=r"x must have shape \(N, 3, H, W\)"):
        tiny_metric.differentiable_scores(torch.rand(2, 5, 64, 64), torch.rand(2, 3, 64, 64))
    with pytest.raises(ImageError, match="floating-point"):
        tiny_metric.differentiable_scores(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), torch.rand(1, 3, 64, 64))


# ------------------------------------------------------------------------------- the backbone contract
def test_backbone_extract_with_grad_is_the_cached_pass_without_its_caches(request):
    """``extract(grad=True)`` (what the functional path calls): the cached pass's numbers, a graph to the
    pixels, nothing read from or written to the latent cache, and an explicit noise that is never kept."""
    from diffsim.backbones.protocol import TextCondition
    from diffsim.functional.diffusion import materialise

    metric = build("sd", request)
    bb = materialise(metric.backbone)
    x, y = _pair(metric, n=2, seed=3)
    px, other = x * 2 - 1, y * 2 - 1
    args = (metric.layers, metric.timestep, TextCondition(metric.prompt), metric.seed)
    path = metric.layers[0]
    bb.clear_caches()
    cached = bb.extract(px, *args)[path]
    assert len(bb._latents) == 2 and not cached.q.requires_grad
    encoded = bb.images_encoded
    xr = px.clone().requires_grad_(True)
    got = bb.extract(xr, *args, grad=True)[path]
    assert bb.images_encoded == encoded + 2  # the VAE ran again: the cached latents were not read
    assert got.q.requires_grad and got.q.shape == cached.q.shape
    assert torch.allclose(got.q, cached.q, atol=1e-6) and torch.allclose(got.v, cached.v, atol=1e-6)
    got.q.sum().backward()
    assert xr.grad is not None and float(xr.grad.abs().sum()) > 0
    bb.extract(other, *args, grad=True)
    assert len(bb._latents) == 2  # new images on the grad path: the latent cache is not filled
    side = metric.size // bb.latent_factor
    seeded = bb.noise(metric.seed, side)
    with torch.no_grad():
        same = bb.extract(px, *args, grad=True, noise=seeded)[path]
        fresh = DF.fresh_noise(bb, side, torch.Generator().manual_seed(11))
        moved = bb.extract(px, *args, grad=True, noise=fresh)[path]
    assert torch.allclose(same.q, cached.q, atol=1e-6)
    assert not torch.allclose(moved.q, cached.q, atol=1e-3)  # the explicit noise is used ...
    assert bb.noise(metric.seed, side) is seeded  # ... and not kept after the call
    with pytest.raises(ConfigError, match=r"apply to the differentiable path \(grad=True\)"):
        bb.extract(px, *args, noise=fresh)
    with pytest.raises(ConfigError, match=r"noise tensors must have shape \(1, 4, 8, 8\)"):
        bb.extract(px, *args, grad=True, noise=(fresh[0][..., :4], fresh[1]))
