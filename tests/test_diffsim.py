"""DiffSim-S end to end on the tiny SD pipeline: properties, caching, truncation, parity."""

from __future__ import annotations

import logging

import pytest
import torch

from diffsim import DiffSim
from diffsim.errors import ConfigError, LayerError

from .conftest import SIZE
from .reference_impl import reference_score


def test_identical_images_score_one(tiny_metric, image_files):
    assert tiny_metric.score(image_files[0], image_files[0]) == pytest.approx(1.0, abs=1e-6)


def test_symmetry(tiny_metric, image_files):
    a, b = image_files[0], image_files[1]
    assert tiny_metric.score(a, b) == pytest.approx(tiny_metric.score(b, a), abs=1e-7)
    m = tiny_metric.matrix(image_files[:3])
    assert torch.allclose(m, m.T, atol=1e-6)
    assert torch.allclose(m.diagonal(), torch.ones(3), atol=1e-6)


def test_distinct_images_score_below_one(tiny_metric, image_files):
    s = tiny_metric.score(image_files[0], image_files[1:4])
    assert s.shape == (3,) and (s < 1 - 1e-6).all() and (s > -1).all()


def test_batch_equals_one_by_one(tiny_sd_path, image_files):
    batched = DiffSim.from_pretrained(tiny_sd_path, size=SIZE, batch_size=3, cache_bytes=0)
    single = batched.with_settings(batch_size=1)
    fb = batched.embed(image_files[:3])
    fs = [single.embed(p) for p in image_files[:3]]
    for key, t in fb.tensors.items():
        for i in range(3):
            assert torch.allclose(t[i], fs[i].tensors[key][0], atol=1e-5), key
    assert torch.allclose(
        batched.compare(fb[0], fb[1:]), torch.cat([single.compare(fs[0], f) for f in fs[1:]]), atol=1e-6
    )


def test_each_image_runs_the_unet_once(tiny_sd_path, image_files):
    m = DiffSim.from_pretrained(tiny_sd_path, size=SIZE, batch_size=1)
    before = m.backbone.passes
    m.matrix(image_files[:3], [image_files[0], image_files[3]])  # image 0 on both sides
    assert m.backbone.passes - before == 4
    m.score(image_files[1], image_files[3])  # both already embedded: memory cache
    assert m.backbone.passes - before == 4


def test_disk_cache_equals_fresh_and_survives_restart(tiny_sd_path, image_files, tmp_path):
    fresh = DiffSim.from_pretrained(tiny_sd_path, size=SIZE, cache_bytes=0).embed(image_files[:2])
    first = DiffSim.from_pretrained(tiny_sd_path, size=SIZE, cache_dir=tmp_path)
    first.embed(image_files[:2])
    files = sorted(tmp_path.rglob("*.safetensors"))
    assert len(files) == 2
    second = DiffSim.from_pretrained(tiny_sd_path, size=SIZE, cache_dir=tmp_path)
    calls = second.backbone.passes
    cached = second.embed(image_files[:2])
    assert second.backbone.passes == calls  # served from disk
    for k in fresh.tensors:
        assert torch.equal(fresh.tensors[k], cached.tensors[k])


def test_corrupt_cache_entry_is_recomputed_with_a_warning(tiny_sd_path, image_files, tmp_path, caplog):
    DiffSim.from_pretrained(tiny_sd_path, size=SIZE, cache_dir=tmp_path).embed(image_files[0])
    (entry,) = tmp_path.rglob("*.safetensors")
    entry.write_bytes(b"garbage")
    m = DiffSim.from_pretrained(tiny_sd_path, size=SIZE, cache_dir=tmp_path)
    calls = m.backbone.passes
    with caplog.at_level(logging.WARNING, logger="diffsim"):
        feats = m.embed(image_files[0])
    assert "corrupt cache entry" in caplog.text and m.backbone.passes == calls + 1
    assert len(feats) == 1 and entry.stat().st_size > 100  # rewritten


def test_cache_key_separates_settings(tiny_metric, image_files):
    other = tiny_metric.with_settings(timestep=300)
    a = tiny_metric.embed(image_files[0])
    b = other.embed(image_files[0])
    key = next(iter(a.tensors))
    assert not torch.allclose(a.tensors[key], b.tensors[key])
    with pytest.raises(ConfigError, match="other settings.*timestep"):
        tiny_metric.compare(a, b)


def test_truncated_pass_equals_full_forward(tiny_metric, rand_images):
    bb = tiny_metric.backbone
    pixels = rand_images * 2 - 1
    layers = bb.resolve(["down1", "up0"])
    short = bb.extract(pixels, layers, 501, "a cat", 7, stop_early=True)
    full = bb.extract(pixels, layers, 501, "a cat", 7, stop_early=False)
    for p in layers:
        assert torch.equal(short[p].q, full[p].q) and torch.equal(short[p].v, full[p].v)


def test_truncated_pass_skips_later_blocks(tiny_metric, rand_images):
    bb = tiny_metric.backbone
    ran = []
    hook = bb.unet.up_blocks[3].register_forward_pre_hook(lambda *a: ran.append(1))
    try:
        bb.extract(rand_images[:1] * 2 - 1, bb.resolve(["up0"]), 501, "", 0)
        assert not ran
        bb.extract(rand_images[:1] * 2 - 1, bb.resolve(["up2"]), 501, "", 0)
        assert ran
    finally:
        hook.remove()


def test_several_layers_in_one_pass_equal_one_at_a_time(tiny_sd_path, image_files):
    multi = DiffSim.from_pretrained(tiny_sd_path, size=SIZE, layer=["down0", "mid", "up1"])
    calls = multi.backbone.passes
    fm = multi.embed(image_files[:2])
    assert multi.backbone.passes == calls + 1
    together = multi.compare_layers(fm[0], fm[1])
    for name in ("down0", "mid", "up1"):
        one = multi.with_settings(layer=name)
        assert together[name].item() == pytest.approx(one.score(image_files[0], image_files[1]), abs=1e-6)
    with pytest.raises(ConfigError, match="3 layers; pass layer="):
        multi.compare(fm[0], fm[1])
    with pytest.raises(LayerError, match="not embedded"):
        multi.compare(fm[0], fm[1], layer="up2")


@pytest.mark.parametrize("layer, step, single_branch", [("up0", 500, False), ("down0", 900, False), ("up2", 750, True)])
def test_parity_with_straightforward_reference(tiny_metric, image_files, layer, step, single_branch):
    m = tiny_metric.with_settings(layer=layer, step=step, prompt="a photo", single_branch=single_branch)
    parts = m.backbone.parts
    for a, b in [(image_files[0], image_files[1]), (image_files[2], image_files[4])]:
        ref = reference_score(
            parts, str(a), str(b), m.layers[0], m.timestep, "a photo", m.seed, SIZE, single_branch=single_branch
        )
        assert m.score(a, b) == pytest.approx(ref, abs=1e-5)


def test_input_types_give_the_same_score(tiny_metric, image_files):
    import numpy as np
    from PIL import Image

    a, b = image_files[0], image_files[1]
    base = tiny_metric.score(a, b)
    pa, pb = Image.open(a), Image.open(b)
    assert tiny_metric.score(pa, pb) == pytest.approx(base, abs=1e-7)
    assert tiny_metric.score(np.asarray(pa.convert("RGB")), str(b)) == pytest.approx(base, abs=1e-7)


def test_score_shapes(tiny_metric, image_files):
    assert isinstance(tiny_metric.score(image_files[0], image_files[1]), float)
    assert tiny_metric.score(image_files[:2], image_files[2:4]).shape == (2,)
    assert tiny_metric.score(image_files[0], image_files[1:4]).shape == (3,)
    assert tiny_metric.matrix(image_files[:2], image_files[2:5]).shape == (2, 3)
    from diffsim.errors import ImageError

    with pytest.raises(ImageError, match="cannot pair 2 images with 3"):
        tiny_metric.score(image_files[:2], image_files[2:5])


def test_mse_similarity_is_a_distance(tiny_metric, image_files):
    m = tiny_metric.with_settings(similarity="mse")
    assert not m.higher_is_better
    assert m.score(image_files[0], image_files[0]) == pytest.approx(0.0, abs=1e-10)
    assert m.score(image_files[0], image_files[1]) > 0


def test_prompt_changes_features_and_is_in_the_config(tiny_metric, image_files):
    a = tiny_metric.embed(image_files[0], prompt="a dog")
    b = tiny_metric.embed(image_files[0], prompt="a cat")
    assert a.config["prompt"] == "a dog"
    assert tiny_metric.compare(a, b).item() < 1 - 1e-7  # prompts differ, the images do not


def test_token_maps(tiny_metric, image_files):
    ma, mb = tiny_metric.similarity_map(image_files[0], image_files[1])
    assert ma.shape == (2, 2) and mb.shape == (2, 2)  # up0 at 64 px: 2 x 2 tokens
    same, _ = tiny_metric.similarity_map(image_files[0], image_files[0])
    assert torch.allclose(same, torch.ones(2, 2), atol=1e-6)


def test_bad_settings(tiny_metric):
    with pytest.raises(ConfigError, match="either timestep .* or step"):
        tiny_metric.with_settings(timestep=10, step=10)
    with pytest.raises(ConfigError, match="similarity"):
        tiny_metric.with_settings(similarity="l2")
    with pytest.raises(ConfigError, match="multiple of 8"):
        tiny_metric.with_settings(size=60)
    with pytest.raises(LayerError, match="Did you mean"):
        tiny_metric.with_settings(layer="up_blocks.1.attentions.2.transformer_blocks.0.atn1")


def test_sd2_layout_works(tiny_sd2_path, image_files):
    """SD 2.x: per-block head dims, linear projections, a v-prediction DDIM scheduler with its own steps."""
    m = DiffSim.from_pretrained(tiny_sd2_path, size=SIZE, step=500)
    assert type(m.backbone.scheduler).__name__ == "DDIMScheduler"
    assert m.timestep == m.backbone.step_table()[500] == 500  # DDIM lists [1000, 999, ...]: T = 1000 - K
    heads = {lay.alias: lay.heads for lay in m.backbone.layers(SIZE) if lay.alias in ("down0", "up0")}
    assert heads == {"down0": 4, "up0": 8}  # diffusers reads attention_head_dim as the head count per block
    assert m.score(image_files[0], image_files[0]) == pytest.approx(1.0, abs=1e-6)
    ref = reference_score(
        m.backbone.parts, str(image_files[0]), str(image_files[1]), m.layers[0], m.timestep, m.prompt, m.seed, SIZE
    )
    assert m.score(image_files[0], image_files[1]) == pytest.approx(ref, abs=1e-5)
