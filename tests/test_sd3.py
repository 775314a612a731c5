"""The SD3 / SD3.5 (MM-DiT) backbone on tiny random StableDiffusion3Pipelines: conventions and float64 parity."""

from __future__ import annotations

import pytest
import torch

from diffsim import aas
from diffsim.aas import QKV
from diffsim.backbones.sd3 import SD3Backbone
from diffsim.errors import ConfigError, LayerError, TimestepError

from .reference_backbones import pair_score
from .reference_impl import load_pixels
from .reference_t2i import sd3_qkv
from .tiny_sd3 import SD3_SIZE, build_tiny_sd3

CPU = {"device": "cpu", "dtype": "float32"}


@pytest.fixture(scope="module", params=["sd3", "sd35"])
def sd3(request, tmp_path_factory, tiny_backbone) -> SD3Backbone:
    if request.param == "sd35":  # the session's tiny "sd3" row is the SD3.5 variant
        path = tiny_backbone("sd3")
    else:
        path = build_tiny_sd3(tmp_path_factory.mktemp(f"tiny-{request.param}") / "model", variant=request.param)
    return SD3Backbone.from_pretrained(path, **CPU)


@pytest.fixture(scope="module")
def pixels(image_files) -> torch.Tensor:
    return torch.cat([load_pixels(str(p), SD3_SIZE) for p in image_files[:4]])


def one(f: QKV, i: int) -> QKV:
    return QKV(f.q[i : i + 1], f.k[i : i + 1], f.v[i : i + 1])


def test_loads_the_real_classes_through_the_pipeline_path(sd3):
    assert type(sd3.pipe).__name__ == "StableDiffusion3Pipeline"
    assert type(sd3.transformer).__name__ == "SD3Transformer2DModel"
    assert int(sd3.vae.config.latent_channels) == 16 and sd3.vae.config.shift_factor == pytest.approx(0.0609)
    assert sd3.default_size == SD3_SIZE and sd3.size_multiple == 16 and sd3.max_size == 24 * 16


def test_layers_aliases_and_errors(sd3):
    rows = sd3.layers(SD3_SIZE)
    assert [r.alias for r in rows] == ["block0", "block1", "block2"]
    assert rows[1].path == "transformer_blocks.1.attn" and rows[1].tokens == 64 and rows[1].heads == 2
    assert sd3.resolve(["block2", 2, "transformer_blocks.2.attn"]) == ["transformer_blocks.2.attn"]
    with pytest.raises(LayerError, match=r"block0..block2 \(transformer_blocks.L.attn\)"):
        sd3.resolve(["block9"])
    with pytest.raises(LayerError, match="Did you mean"):
        sd3.resolve(["transformer_blocks.1.attn2"])  # SD3.5's image-only second attention is not offered


def test_step_table_is_the_unshifted_flow_table(sd3):
    table = sd3.step_table()
    assert len(table) == 1000 and table[:3] == [1000, 999, 998] and table[-1] == 1
    assert [sd3.timestep(step=k) for k in (0, 500, 900, 999)] == [1000, 500, 100, 1]
    assert sd3.timestep(timestep=1000) == 1000 and sd3.timestep(timestep=0) == 0
    with pytest.raises(TimestepError, match="0 <= T <= 1000"):
        sd3.timestep(timestep=1001)
    with pytest.raises(TimestepError, match="0..999"):
        sd3.timestep(step=1000)
    with pytest.raises(ConfigError, match="not both"):
        sd3.timestep(timestep=3, step=3)


def test_noise_is_the_flow_path_and_the_transformer_is_told_sigma_times_1000(sd3):
    z0 = torch.randn(2, 16, 8, 8)
    _, eps = sd3.noise(5, 8)
    assert torch.allclose(sd3.model_input(z0, 300, 5), 0.7 * z0 + 0.3 * eps, atol=1e-6)
    seen = []
    h = sd3.transformer.time_text_embed.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        sd3.extract(torch.zeros(1, 3, 64, 64), sd3.resolve(["block0"]), 300, "a photo", 0)
    finally:
        h.remove()
    assert seen[0].dtype == torch.float32 and seen[0].tolist() == [300.0, 300.0]


def test_image_stream_only_and_the_guidance_pair(sd3, pixels):
    path = sd3.resolve(["block1"])
    both = sd3.extract(pixels[:1], path, 500, "a photo", 0)[path[0]]
    assert both.q.shape == (1, 2, 2, 64, 8)  # 8 x 8 image tokens; no text tokens
    cond = sd3.extract(pixels[:1], path, 500, "a photo", 0, branches=1)[path[0]]
    empty = sd3.extract(pixels[:1], path, 500, "", 0, branches=1)[path[0]]
    assert torch.allclose(both.q[:, 1], cond.q[:, 0], atol=1e-5)  # [uncond "", prompt]
    assert torch.allclose(both.q[:, 0], empty.q[:, 0], atol=1e-5)
    assert not torch.allclose(cond.q, empty.q, atol=1e-4)  # the prompt matters (pooled text modulation)


def test_spread_symmetry_identity(sd3, pixels):
    path = sd3.resolve(["block1"])
    f = sd3.extract(pixels, path, 500, "a photo", 0)[path[0]]
    m = aas.score_matrix(f, f, "cosine")
    assert torch.allclose(m.diagonal(), torch.ones(4), atol=1e-6) and torch.allclose(m, m.T, atol=1e-6)
    off = m[~torch.eye(4, dtype=torch.bool)]
    assert off.max() < 0.98 and off.max() - off.min() > 0.02


@pytest.mark.parametrize("block, t, prompt", [(0, 500, "a photo"), (2, 150, "the cat")])
def test_parity_with_float64_reference(sd3, pixels, block, t, prompt):
    path = sd3.resolve([block])[0]
    f = sd3.extract(pixels[1:3], [path], t, prompt, 4)[path]
    got = float(aas.score(one(f, 0), one(f, 1), "cosine"))
    qa = sd3_qkv(sd3.pipe, pixels[1:2], block, t, prompt, 4)
    qb = sd3_qkv(sd3.pipe, pixels[2:3], block, t, prompt, 4)
    assert got == pytest.approx(pair_score(qa, qb), abs=1e-5)
    assert got < 0.95
    for mine, ref in zip((f.q, f.k, f.v), qa, strict=True):
        assert torch.allclose(mine[0].double(), ref, atol=1e-4 * float(ref.abs().max()))


def test_too_large_for_the_positional_embedding(sd3):
    big = sd3.max_size + sd3.size_multiple
    with pytest.raises(ConfigError, match=f"size {big} is larger than this SD3 model takes"):
        sd3.extract(torch.zeros(1, 3, big, big), sd3.resolve(["block0"]), 500, "", 0)


def test_without_t5_is_the_backbones_own_load_option(sd3):
    """``text_encoder_3=False`` is a load option SD3 declares (not a ``LoadSpec`` field): no T5 is loaded, its
    share of the prompt embedding is zeros, and it is another shared instance and weights identity; the
    default shares the T5 one. An unknown option or a value of the wrong type is refused by the backbone."""
    from diffsim import create_metric
    from diffsim.backbones.spec import LoadSpec

    kw = {"model": sd3.source, "size": SD3_SIZE, "layer": "block1", **CPU}
    assert create_metric("diffsim-s-sd3", **kw).backbone is sd3
    bb = create_metric("diffsim-s-sd3", text_encoder_3=False, **kw).backbone
    assert sd3.pipe.text_encoder_3 is not None and bb.pipe.text_encoder_3 is None and bb is not sd3
    assert bb.identity == sd3.identity + "+text_encoder_3=False"
    with_t5, without = sd3.encode_prompt("a photo")[0], bb.encode_prompt("a photo")[0]
    clip = 77  # the CLIP tokens come first, then T5's
    assert with_t5.shape == without.shape and torch.equal(with_t5[:, :clip], without[:, :clip])
    assert float(with_t5[:, clip:].abs().sum()) > 0 and float(without[:, clip:].abs().sum()) == 0
    with pytest.raises(ConfigError, match="SD3 backbone has no load option 'text_encoder_4'; its load options: text"):
        SD3Backbone.load(LoadSpec(sd3.source, **CPU, options=(("text_encoder_4", False),)))
    with pytest.raises(ConfigError, match="load option text_encoder_3 must be a bool; got 'no'"):
        SD3Backbone.load(LoadSpec(sd3.source, **CPU, options=(("text_encoder_3", "no"),)))
