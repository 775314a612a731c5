"""DiffSim-S on a tiny random SDXL pipeline: detection, conditioning, noising, aliases, parity."""

from __future__ import annotations

import pytest
import torch

import diffsim
from diffsim import DiffSim, create_metric
from diffsim.backbones.protocol import TextCondition
from diffsim.backbones.sdxl import SDXLBackbone
from diffsim.errors import ConfigError
from diffsim.metrics.diffsim_sdxl import DiffSimXL

from .conftest import SIZE
from .reference_backbones import pair_score, sdxl_qkv
from .reference_impl import load_pixels


@pytest.fixture(scope="module")
def sdxl_path(tiny_sdxl_path):
    return tiny_sdxl_path


@pytest.fixture(scope="module")
def sdxl(sdxl_path):
    return diffsim.load(
        sdxl_path,
        layer="up0",
        timestep=300,
        prompt="a photo",
        size=SIZE,
        seed=3,
        device="cpu",
        dtype=torch.float32,
        batch_size=1,
    )


def test_an_sdxl_folder_gets_the_sdxl_backbone(sdxl, sdxl_path, tiny_sd_path):
    assert isinstance(sdxl.backbone, SDXLBackbone) and isinstance(sdxl, DiffSimXL)
    assert sdxl.name == "diffsim-s-sdxl"
    assert diffsim.load(sdxl_path, device="cpu", dtype="float32").size == 1024  # native default
    auto = create_metric("auto", model=sdxl_path, size=SIZE, device="cpu", dtype="float32")
    assert type(auto) is DiffSimXL and auto.name == "diffsim-s-sdxl"
    # one kind per entry point: DiffSim (SD 1.x/2.x) never turns into another class, it says what fits
    with pytest.raises(ConfigError, match=r"is a Stable Diffusion XL.*diffsim-s-sdxl.*diffsim\.load"):
        DiffSim.from_pretrained(model=sdxl_path, device="cpu", dtype="float32")
    with pytest.raises(ConfigError, match="diffsim-s-sdxl"):
        create_metric("diffsim-s", model=sdxl_path, size=SIZE, device="cpu", dtype="float32")
    with pytest.raises(ConfigError, match="Stable Diffusion 1.x/2.x pipeline.*expected a Stable Diffusion XL"):
        create_metric("diffsim-s-sdxl", model=tiny_sd_path, device="cpu")


def test_identity_symmetry_and_spread(sdxl, image_files):
    m = sdxl.matrix(image_files[:4])
    assert torch.allclose(m.diagonal(), torch.ones(4), atol=1e-6)
    assert torch.allclose(m, m.T, atol=1e-6)
    off = m[~torch.eye(4, dtype=torch.bool)]
    assert off.max() < 0.999 and off.max() - off.min() > 5e-3  # scores are informative, not all ~1


def test_batch_equals_one_by_one(sdxl, image_files):
    batched = sdxl.with_settings(batch_size=3, cache_bytes=0)
    single = sdxl.with_settings(batch_size=1, cache_bytes=0)
    sdxl.backbone.clear_caches()
    fb = batched.embed(image_files[:3])
    sdxl.backbone.clear_caches()  # the VAE runs again, one image at a time
    fs = [single.embed(p) for p in image_files[:3]]
    for key, t in fb.tensors.items():
        for i in range(3):
            assert torch.allclose(t[i], fs[i].tensors[key][0], atol=5e-5 * float(t.abs().max())), key
    assert batched.compare(fb[0], fb[1]).item() == pytest.approx(single.compare(fs[0], fs[1]).item(), abs=1e-5)


@pytest.mark.parametrize("layer, timestep", [("up0", 300), ("down0.a0.t1", 700)])
def test_parity_with_float64_reference(sdxl, image_files, layer, timestep):
    m = sdxl.with_settings(layer=layer, timestep=timestep)
    pipe = m.backbone.pipe
    a, b = (load_pixels(str(p), SIZE) for p in image_files[1:3])
    qa = sdxl_qkv(pipe, a, m.layers[0], timestep, "a photo", m.seed)
    qb = sdxl_qkv(pipe, b, m.layers[0], timestep, "a photo", m.seed)
    ref = pair_score(qa, qb)
    assert m.score(image_files[1], image_files[2]) == pytest.approx(ref, abs=2e-5)
    # the features themselves: same Q/K/V as the reference (the pair score alone could hide an offset)
    feats = m.embed(image_files[1])
    q = feats.tensors[f"{m.layers[0]}/q"][0].double()
    assert torch.allclose(q, qa[0], atol=1e-4 * float(qa[0].abs().max()))


def test_authors_fixed_1024_conditioning_differs_and_matches_its_reference(sdxl, image_files):
    bb = sdxl.backbone
    px = torch.cat([load_pixels(str(p), SIZE) for p in image_files[:1]])
    native = bb.extract(px, sdxl.layers, 300, "a photo", 3)[sdxl.layers[0]].q[0]
    fixed = bb.extract(px, sdxl.layers, 300, TextCondition("a photo", size=1024), 3)[sdxl.layers[0]].q[0]
    ref = sdxl_qkv(bb.pipe, px, sdxl.layers[0], 300, "a photo", 3, conditioning_size=1024)[0]
    assert not torch.allclose(native, fixed, atol=1e-4)
    assert torch.allclose(fixed.double(), ref, atol=1e-4 * float(ref.abs().max()))


def test_unconditional_branch_is_zeros(sdxl):
    cond, uncond, pooled, uncond_pooled = sdxl.backbone.text_conditioning("a photo")
    assert cond.shape[-1] == 32 and not cond.eq(0).all()  # 16 + 16: both encoders' penultimate states
    assert uncond.eq(0).all() and uncond_pooled.eq(0).all()  # force_zeros_for_empty_prompt


def test_step_maps_to_euler_timesteps(sdxl):
    bb = sdxl.backbone
    assert type(bb.scheduler).__name__ == "EulerDiscreteScheduler"
    for k in (1, 100, 500, 900, 999):
        assert bb.timestep(step=k) == 1000 - k
    with pytest.raises(Exception, match="out of range"):
        bb.timestep(step=0)  # T = 1000


def test_noising_is_the_ddpm_forward_process(sdxl):
    """add_noise + scale_model_input (Euler) = sqrt(abar) z0 + sqrt(1 - abar) eps: no init_noise_sigma boost."""
    from .reference_backbones import abar

    bb = sdxl.backbone
    z0 = torch.randn(2, 4, 8, 8)
    _, eps = bb.noise(5, 8)
    for t in (10, 500, 999):
        a = abar(bb.scheduler, t)
        expected = a**0.5 * z0 + (1 - a) ** 0.5 * eps
        assert torch.allclose(bb.model_input(z0, t, 5), expected, atol=1e-5)


def test_aliases_name_every_transformer_block(sdxl):
    bb = sdxl.backbone
    al = bb.aliases()
    assert al["up0"] == "up_blocks.0.attentions.2.transformer_blocks.2.attn1"  # depth 3 here (10 in SDXL)
    assert al["up0.a2.t0"] == "up_blocks.0.attentions.2.transformer_blocks.0.attn1"
    assert al["down0.a1.t1.cross"] == "down_blocks.1.attentions.1.transformer_blocks.1.attn2"
    assert bb.resolve(["mid.a0.t1"]) == ["mid_block.attentions.0.transformer_blocks.1.attn1"]
    n_transformers = sum(
        len(a.transformer_blocks)
        for b in [*bb.unet.down_blocks, bb.unet.mid_block, *bb.unet.up_blocks]
        for a in getattr(b, "attentions", [])
    )
    assert len([a for a in al if ".t" in a and not a.endswith(".cross")]) == n_transformers
    rows = bb.layers(SIZE)
    assert {r.alias for r in rows if r.kind == "self"} >= {"down0", "down1", "mid", "up0", "up1", "up0.a0.t0"}


def test_fp16_model_keeps_the_vae_in_float32(sdxl_path):
    from diffsim.backbones.sdxl import SDXLBackbone as B

    bb = B.from_pretrained(sdxl_path, device="cpu", dtype="float16", share=False)
    assert bb.unet.dtype == torch.float16 and bb.vae.dtype == torch.float32


def test_authors_conditioning_is_a_setting(sdxl, image_files):
    fixed = sdxl.with_settings(conditioning_size=1024)
    assert fixed.config["conditioning_size"] == 1024
    assert fixed.score(image_files[0], image_files[1]) != pytest.approx(
        sdxl.score(image_files[0], image_files[1]), abs=1e-6
    )
    with pytest.raises(ConfigError, match="conditioning_size"):
        sdxl.with_settings(conditioning_size=0)
