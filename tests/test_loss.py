"""DiffSimLoss / metric.as_loss and the differentiable DiffSimScore: values, gradients, frozen backbones."""

from __future__ import annotations

import pytest
import torch

from diffsim import ConfigError, create_metric
from diffsim.loss import DiffSimLoss, backbone_modules

from .tiny_loss import KINDS, build, working_size


@pytest.fixture(scope="module", params=KINDS)
def metric(request):
    return build(request.param, request)


def _images(metric, n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    s = working_size(metric)
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(2 * n, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(low, size=(s, s), mode="bilinear", align_corners=False).clamp(0, 1)
    return x[:n], x[n:]


def test_loss_is_one_minus_score_or_the_distance_and_reaches_both_inputs(metric):
    x, y = _images(metric)
    loss_fn = metric.as_loss(reduction="none")
    assert isinstance(loss_fn, DiffSimLoss) and list(loss_fn.parameters()) == [] and loss_fn.state_dict() == {}
    xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    per_pair = loss_fn(xr, yr)
    want = metric.score(x, y)
    want = 1 - want if metric.higher_is_better else want
    tol = 2e-2 if metric.name == "diffsim-c" else 1e-6  # see test_functional.TOLERANCE
    assert torch.allclose(per_pair.detach(), want, atol=tol), (metric.name, per_pair, want)
    per_pair.sum().backward()
    for g in (xr.grad, yr.grad):
        assert g is not None and torch.isfinite(g).all() and float(g.abs().sum()) > 0
    # the backbone: frozen, in eval mode, and no parameter got a gradient
    modules = backbone_modules(metric.backbone)
    assert modules
    params = [p for m in modules for p in m.parameters()]
    assert params and not any(p.requires_grad for p in params)
    assert all(p.grad is None for p in params)
    loss_fn.train()
    assert all(not m.training for m in modules for m in m.modules())


def test_reductions(metric):
    x, y = _images(metric)
    each = metric.as_loss("none")(x, y)
    assert torch.allclose(metric.as_loss()(x, y), each.mean(), atol=1e-7)
    assert torch.allclose(metric.as_loss("sum")(x, y), each.sum(), atol=1e-6)
    with pytest.raises(ConfigError, match="reduction must be one of mean, sum, none; got 'max'"):
        metric.as_loss("max")


@pytest.mark.parametrize("kind", ["sd", "lpips", "clip-aas"])
def test_optimising_an_image_toward_a_reference_lowers_the_loss(kind, request):
    metric = build(kind, request)
    x, ref = _images(metric, n=1, seed=3)
    loss_fn = metric.as_loss()
    logits = torch.logit(x.clamp(0.02, 0.98)).requires_grad_(True)  # images stay in [0, 1]
    opt = torch.optim.Adam([logits], lr=0.05)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = loss_fn(torch.sigmoid(logits), ref)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        final = float(loss_fn(torch.sigmoid(logits), ref))
    assert final < 0.9 * losses[0], (kind, losses, final)


def test_noise_fixed_by_the_seed_or_fresh_per_call(request):
    metric = build("sd", request)
    x, y = _images(metric)
    fixed = metric.as_loss()
    assert float(fixed(x, y)) == float(fixed(x, y))
    fresh = metric.as_loss(noise="fresh", seed=7)
    a, b = float(fresh(x, y)), float(fresh(x, y))
    assert a != b  # a new draw at every call
    again = metric.as_loss(noise="fresh", seed=7)
    assert float(again(x, y)) == a  # reproducible from its seed
    with pytest.raises(ConfigError, match="noise must be one of fixed, fresh"):
        metric.as_loss(noise="random")
    with pytest.raises(ConfigError, match="noise='fresh' applies to diffusion metrics"):
        build("lpips", request).as_loss(noise="fresh")


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradient(kind, request):
    metric = build(kind, request)
    x, y = _images(metric, n=1)
    grads = []
    for ckpt in (False, True):
        xr = x.clone().requires_grad_(True)
        loss = metric.as_loss(checkpoint=ckpt)(xr, y)
        loss.backward()
        grads.append((float(loss.detach()), xr.grad))
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-7)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6, rtol=1e-4)
    assert not metric.backbone.unet.is_gradient_checkpointing  # switched off again afterwards
    with pytest.raises(ConfigError, match="checkpointing is offered for U-Net backbones"):
        build("dit", request).as_loss(checkpoint=True)(x, y)


def test_to_device_and_dtype(request):
    metric = build("sd", request)
    loss_fn = metric.as_loss()
    x, y = _images(metric)
    before = float(loss_fn(x, y))
    assert loss_fn.to("cpu") is loss_fn and loss_fn.metric is metric  # same device: nothing reloaded
    assert float(loss_fn.to(torch.device("cpu"))(x, y)) == before
    half = metric.as_loss().to(torch.bfloat16)
    assert half.metric.dtype == torch.bfloat16 and half.metric is not metric
    assert all(p.dtype == torch.bfloat16 for p in half.metric.backbone.unet.parameters())
    assert not any(p.requires_grad for p in half.metric.backbone.unet.parameters())
    assert abs(float(half(x, y)) - before) < 0.05  # the same loss, in lower precision


def test_multi_layer_metric_and_mse_distance(request):
    metric = build("sd", request)
    x, y = _images(metric)
    two = metric.with_settings(layer=("up1", "up0"))
    per = [metric.with_settings(layer=layer).score(x, y) for layer in ("up1", "up0")]
    assert torch.allclose(two.as_loss("none")(x, y), 1 - (per[0] + per[1]) / 2, atol=1e-6)
    mse = metric.with_settings(similarity="mse")
    assert torch.allclose(mse.as_loss("none")(x, y), mse.score(x, y), atol=1e-7)  # a distance: itself


def test_metrics_without_a_differentiable_path_say_so(tiny_clip_path):
    m = create_metric("clip-i", model=tiny_clip_path, device="cpu", dtype="float32", size=32)
    with pytest.raises(
        ConfigError, match="clip-i cannot be a loss; differentiable: clip-aas, diffsim-c, diffsim-dit, diffsim-s"
    ):
        m.as_loss()


# ------------------------------------------------------------------------------------------ torchmetrics
def test_torchmetrics_uses_the_functional_path_without_the_cache(request):
    pytest.importorskip("torchmetrics")
    from diffsim.integrations.torchmetrics import DiffSimScore

    metric = build("sd", request)
    x, y = _images(metric, seed=9)
    m = DiffSimScore(metric=metric, reduction="none")
    assert m.functional and m.is_differentiable is False
    before = (len(metric.cache), metric.cache.misses)
    m.update(x, y)
    assert (len(metric.cache), metric.cache.misses) == before  # generated images are not cached
    assert torch.allclose(m.compute(), metric.score(x, y), atol=1e-6)
    assert not m.compute().requires_grad


def test_torchmetrics_as_loss_is_differentiable_and_keeps_no_graph_in_its_states(request):
    pytest.importorskip("torchmetrics")
    from diffsim.integrations.torchmetrics import DiffSimScore

    metric = build("sd", request)
    x, y = _images(metric, seed=4)
    m = DiffSimScore(metric=metric, as_loss=True)
    assert m.is_differentiable is True
    xr = x.clone().requires_grad_(True)
    batch = m(xr, y)
    assert batch.requires_grad
    (1 - batch).backward()
    assert xr.grad is not None and float(xr.grad.abs().sum()) > 0
    assert all(not s.requires_grad for s in m.scores)
    assert torch.allclose(m.compute(), metric.score(x, y).mean(), atol=1e-6)
    clip = request.getfixturevalue("tiny_clip_path")
    with pytest.raises(ConfigError, match="as_loss=True needs a differentiable metric"):
        DiffSimScore(metric="clip-i", model=clip, device="cpu", size=32, as_loss=True)


# ------------------------------------------------------------------------------------------------ example
def test_style_loss_example_runs_on_a_tiny_model(sharp_sd_path, tmp_path, capsys):
    """examples/style_loss.py's command line on the tiny model: pictures written, the style loss went down."""
    import importlib.util
    import json
    from pathlib import Path

    from PIL import Image

    path = Path(__file__).resolve().parents[1] / "examples" / "style_loss.py"
    spec = importlib.util.spec_from_file_location("style_loss_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = ["--model", str(sharp_sd_path), "--size", "64", "--layer", "up1", "--step", "500", "--steps", "6"]
    argv += ["--lr", "0.1", "--device", "cpu", "--out", str(tmp_path / "out")]
    assert example.main(argv) == 0
    assert "style loss" in capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "history.json").read_text())
    assert result["style_loss_after"] < result["style_loss_before"]
    assert len(result["history"]) == 6
    for name in result["files"]:
        assert Image.open(tmp_path / "out" / name).size[1] >= 64
    assert Image.open(tmp_path / "out" / "style_loss.png").size[0] == 3 * 64
