"""The explicit truncated U-Net forward equals the hook path (full U-Net forward with pre-hooks)."""

from __future__ import annotations

import time

import pytest
import torch

from diffsim import StableDiffusionBackbone
from diffsim.backbones.capture import capture_qkv, run_until_captured
from diffsim.backbones.unet_forward import ExplicitRunner, TruncatedUNet, UnsupportedLayout, plan_truncation

from .conftest import SIZE

TOL = 1e-6


@pytest.fixture(scope="module")
def sd2_backbone(tiny_sd2_path):
    return StableDiffusionBackbone.from_pretrained(tiny_sd2_path, device="cpu", dtype="float32")


def _inputs(unet, side: int = 8, n: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(n, unet.config.in_channels, side, side, generator=g)
    ctx = torch.randn(n, 77, unet.config.cross_attention_dim, generator=g)
    t = torch.full((n,), 501, dtype=torch.long)
    return sample, t, ctx


def _hooked(unet, paths, sample, t, ctx, **kw):
    """Reference: the full U-Net forward (no early stop) with capture pre-hooks."""
    with torch.no_grad(), capture_qkv(unet, list(paths), stop_early=False) as store:
        run_until_captured(unet, sample, t, encoder_hidden_states=ctx, return_dict=False, **kw)
    return store


def _assert_same(explicit, hooked, paths):
    assert set(explicit) == set(paths)
    for p in paths:
        for name, x, y in zip("qkv", explicit[p], (hooked[p].q, hooked[p].k, hooked[p].v), strict=True):
            assert x.shape == y.shape, (p, name)
            assert (x - y).abs().max().item() <= TOL, (p, name, (x - y).abs().max().item())


def _all_layers(backbone, kind: str) -> list[str]:
    return [layer.path for layer in backbone.layers(SIZE) if layer.kind == kind]


@pytest.mark.parametrize("layout", ["sd15", "sd2"])
def test_every_self_attention_layer_equals_hook_path(layout, tiny_metric, sd2_backbone):
    bb = tiny_metric.backbone if layout == "sd15" else sd2_backbone
    paths = _all_layers(bb, "self")
    assert (
        any(p.startswith("down") for p in paths)
        and any(p.startswith("mid") for p in paths)
        and any(p.startswith("up") for p in paths)
    )
    sample, t, ctx = _inputs(bb.unet)
    ref = _hooked(bb.unet, paths, sample, t, ctx)
    with torch.no_grad():
        for p in paths:
            _assert_same(TruncatedUNet(bb.unet, [p])(sample, t, ctx), ref, [p])


@pytest.mark.parametrize("layout", ["sd15", "sd2"])
def test_several_layers_at_once_and_cross_attention(layout, tiny_metric, sd2_backbone):
    bb = tiny_metric.backbone if layout == "sd15" else sd2_backbone
    selfs, crosses = _all_layers(bb, "self"), _all_layers(bb, "cross")
    sets = [selfs, selfs[::3] + crosses[1::4], [crosses[-1]], [selfs[0], crosses[0]]]
    sample, t, ctx = _inputs(bb.unet, seed=1)
    ref = _hooked(bb.unet, selfs + crosses, sample, t, ctx)
    with torch.no_grad():
        for paths in sets:
            out = TruncatedUNet(bb.unet, paths)(sample, t, ctx)
            _assert_same(out, ref, paths)
    k = out[crosses[0]][1]
    assert k.shape[-2] == 77  # cross-attention K/V come from the encoder states


def test_latent_side_not_divisible_by_the_upsampling(tiny_metric):
    """6 x 6 latents: the up blocks get explicit upsample sizes, as in the U-Net's own forward."""
    unet = tiny_metric.backbone.unet
    paths = [tiny_metric.backbone.aliases()[a] for a in ("up0", "up1", "up2")]
    sample, t, ctx = _inputs(unet, side=6, n=2)
    ref = _hooked(unet, paths, sample, t, ctx)
    with torch.no_grad():
        _assert_same(TruncatedUNet(unet, paths)(sample, t, ctx), ref, paths)


def test_sdxl_text_time_conditioning():
    """An SDXL-layout U-Net (text_time added conditioning, 2 transformer blocks per layer, linear projections)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(16, 32, 32),
        norm_num_groups=8,
        cross_attention_dim=24,
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2, 2),
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=16 + 6 * 8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    ).eval()
    sample, t, ctx = _inputs(unet, n=2)
    added = {"text_embeds": torch.randn(2, 16), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}
    paths = [n for n, m in unet.named_modules() if n.endswith(("attn1", "attn2"))]
    assert any(".transformer_blocks.1." in p for p in paths)
    ref = _hooked(unet, paths, sample, t, ctx, added_cond_kwargs=added)
    with torch.no_grad():
        for p in paths:
            _assert_same(TruncatedUNet(unet, [p])(sample, t, ctx, added), ref, [p])
        _assert_same(TruncatedUNet(unet, paths)(sample, t, ctx, added), ref, paths)
        other = TruncatedUNet(unet, [paths[-1]])(sample, t, ctx, {**added, "text_embeds": torch.randn(2, 16)})
    assert not torch.allclose(other[paths[-1]][0], ref[paths[-1]].q)  # the added conditioning is used


@pytest.fixture
def explicit_backbone(tiny_metric):
    """The shared tiny SD backbone with the eager explicit runner for one test (the default: hooks)."""
    lazy = tiny_metric.backbone
    bb = getattr(lazy, "real", lambda: lazy)()  # a lazy backbone: the loaded one
    assert bb.runner is None  # the hook path is the default
    bb.runner = ExplicitRunner(bb.unet, bb.vae, bb.device)
    bb.clear_caches()
    yield bb
    bb.runner = None
    bb.clear_caches()


def test_backbone_uses_the_explicit_path_and_skips_later_blocks(explicit_backbone, tiny_metric, rand_images):
    bb = explicit_backbone
    ran = []
    hook = bb.unet.up_blocks[3].resnets[0].register_forward_pre_hook(lambda *a: ran.append(1))
    try:
        out = bb.extract(rand_images * 2 - 1, bb.resolve(["up0"]), 501, "a cat", 7)
        assert bb.runner.last_path == "explicit" and not ran
        full = bb.extract(rand_images * 2 - 1, bb.resolve(["up0"]), 501, "a cat", 7, stop_early=False)
        assert bb.runner.last_path == "hooks" and ran
    finally:
        hook.remove()
    p = bb.resolve(["up0"])[0]
    assert torch.equal(out[p].q, full[p].q) and torch.equal(out[p].k, full[p].k) and torch.equal(out[p].v, full[p].v)
    bb.runner, runner = None, bb.runner  # the default hook path, VAE included: the same bits
    bb.clear_caches()
    hooked = bb.extract(rand_images * 2 - 1, bb.resolve(["up0"]), 501, "a cat", 7)
    bb.runner = runner
    assert torch.equal(out[p].q, hooked[p].q) and torch.equal(out[p].k, hooked[p].k)


def test_hooks_on_a_partly_run_module_fall_back_to_the_hook_path(explicit_backbone, rand_images):
    bb = explicit_backbone
    layer = bb.resolve(["up1"])
    block = bb.unet.up_blocks[2]
    explicit = bb.extract(rand_images[:1] * 2 - 1, layer, 501, "", 0)
    assert bb.runner.last_path == "explicit"
    seen = []
    hook = block.register_forward_pre_hook(lambda *a: seen.append(1))
    try:
        with pytest.raises(UnsupportedLayout, match="hooks"):
            plan_truncation(bb.unet, layer)
        hooked = bb.extract(rand_images[:1] * 2 - 1, layer, 501, "", 0)
        assert bb.runner.last_path == "hooks" and seen  # the user's hook fired
    finally:
        hook.remove()
    assert torch.equal(explicit[layer[0]].q, hooked[layer[0]].q)


def test_unsupported_layouts_are_explained(tiny_metric):
    unet = tiny_metric.backbone.unet
    with pytest.raises(UnsupportedLayout, match="not an attention layer"):
        plan_truncation(unet, ["up_blocks.1.resnets.0"])
    with pytest.raises(UnsupportedLayout, match="no layers"):
        plan_truncation(unet, [])


def test_traces_as_one_graph(tiny_metric):
    """torch.compile(fullgraph=True) accepts the whole truncated pass: no graph break anywhere."""
    bb = tiny_metric.backbone
    paths = bb.resolve(["down1", "mid", "up0"])
    sample, t, ctx = _inputs(bb.unet, n=2)
    module = TruncatedUNet(bb.unet, paths)
    compiled = torch.compile(module, fullgraph=True, backend="eager", dynamic=False)
    with torch.no_grad():
        out, ref = compiled(sample, t, ctx), module(sample, t, ctx)
    for p in paths:
        for x, y in zip(out[p], ref[p], strict=True):
            assert torch.equal(x, y)


@pytest.mark.slow
def test_inductor_compiled_equals_eager(tiny_sd_path, image_files):
    """compile=True (inductor) on CPU: same scores as eager within float32 rounding."""
    from diffsim import DiffSim

    eager = DiffSim.from_pretrained(
        tiny_sd_path, size=SIZE, device="cpu", dtype="float32", cache_bytes=0, layer=["down1", "up0"], batch_size=3
    )
    start = time.perf_counter()
    comp = DiffSim.from_pretrained(
        tiny_sd_path,
        size=SIZE,
        device="cpu",
        dtype="float32",
        cache_bytes=0,
        layer=["down1", "up0"],
        batch_size=3,
        compile=True,
    )
    fc = comp.embed(image_files[:3])  # batch of 3 padded to 4 inside
    assert comp.backbone.runner.last_path == "explicit" and comp.backbone.compile == "default"
    fe = eager.embed(image_files[:3])
    for k in fe.tensors:
        assert torch.allclose(fc.tensors[k], fe.tensors[k], atol=1e-5, rtol=1e-4), k
    for layer in ("down1", "up0"):
        assert torch.allclose(comp.compare_matrix(fc, fc, layer), eager.compare_matrix(fe, fe, layer), atol=1e-5)
    assert time.perf_counter() - start < 600
