"""The PixArt-Sigma / PixArt-alpha backbone on tiny random pipelines: conventions and float64 parity."""

from __future__ import annotations

import pytest
import torch

from diffsim import aas
from diffsim.aas import QKV
from diffsim.backbones.pixart import PixArtBackbone
from diffsim.errors import LayerError

from .reference_backbones import abar, pair_score
from .reference_impl import load_pixels
from .reference_t2i import pixart_qkv
from .tiny_pixart import PIXART_SIZE, build_tiny_pixart

CPU = {"device": "cpu", "dtype": "float32"}
MAX_LENGTH = {"sigma": 300, "alpha": 120}  # the pipelines' own T5 lengths


@pytest.fixture(scope="module", params=["sigma", "alpha"])
def pixart(request, tmp_path_factory, tiny_backbone) -> tuple[str, PixArtBackbone]:
    if request.param == "sigma":  # the session's tiny "pixart" row
        path = tiny_backbone("pixart")
    else:
        path = build_tiny_pixart(tmp_path_factory.mktemp(f"tiny-pixart-{request.param}") / "model", variant="alpha")
    return request.param, PixArtBackbone.from_pretrained(path, **CPU)


@pytest.fixture(scope="module")
def pixels(image_files) -> torch.Tensor:
    return torch.cat([load_pixels(str(p), PIXART_SIZE) for p in image_files[:4]])


def one(f: QKV, i: int) -> QKV:
    return QKV(f.q[i : i + 1], f.k[i : i + 1], f.v[i : i + 1])


def test_loads_the_pipeline_its_model_index_names(pixart):
    variant, bb = pixart
    assert type(bb.pipe).__name__ == {"sigma": "PixArtSigmaPipeline", "alpha": "PixArtAlphaPipeline"}[variant]
    assert type(bb.transformer).__name__ == "PixArtTransformer2DModel"
    assert bb.transformer.use_additional_conditions is (variant == "alpha")
    assert bb.default_size == PIXART_SIZE and bb.size_multiple == 16


def test_layers_aliases_and_steps(pixart):
    _, bb = pixart
    rows = bb.layers(PIXART_SIZE)
    assert [r.alias for r in rows] == ["block0", "block1", "block2"]
    assert rows[0].path == "transformer_blocks.0.attn1" and rows[0].tokens == 64 and rows[0].heads == 3
    assert bb.resolve([1, "block1", "transformer_blocks.1.attn1"]) == ["transformer_blocks.1.attn1"]
    with pytest.raises(LayerError, match=r"block0..block2 \(transformer_blocks.L.attn1\)"):
        bb.resolve(["transformer_blocks.1.attn2"])  # the text cross-attention is not a DiffSim-S layer
    table = bb.step_table()  # DPM-Solver, linspace spacing: T = round(999 (1000 - K) / 1000)
    assert len(table) == 1000 and table[0] == 999 and table[-1] == 1 and bb.timestep(step=500) == table[500] == 500


def test_noise_is_ddpm_add_noise_and_the_transformer_is_told_t(pixart):
    _, bb = pixart
    z0 = torch.randn(2, 4, 8, 8)
    _, eps = bb.noise(5, 8)
    a = abar(bb.scheduler, 400)  # recomputed from the linear beta schedule
    assert torch.allclose(bb.model_input(z0, 400, 5), a**0.5 * z0 + (1 - a) ** 0.5 * eps, atol=1e-6)
    seen = []
    h = bb.transformer.adaln_single.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(
            (args[0].clone(), args[1] if len(args) > 1 else kwargs["added_cond_kwargs"])
        ),
        with_kwargs=True,
    )
    try:
        bb.extract(torch.zeros(1, 3, 64, 64), bb.resolve(["block0"]), 400, "a photo", 0)
    finally:
        h.remove()
    t, extra = seen[0]
    assert t.tolist() == [400, 400]
    if bb.transformer.use_additional_conditions:  # the real input size, for both branches
        assert extra["resolution"].tolist() == [[64.0, 64.0]] * 2 and extra["aspect_ratio"].tolist() == [[1.0]] * 2
    else:
        assert extra == {"resolution": None, "aspect_ratio": None}


def test_guidance_pair_and_spread(pixart, pixels):
    _, bb = pixart
    path = bb.resolve(["block1"])
    both = bb.extract(pixels[:1], path, 300, "a photo", 0)[path[0]]
    cond = bb.extract(pixels[:1], path, 300, "a photo", 0, branches=1)[path[0]]
    empty = bb.extract(pixels[:1], path, 300, "", 0, branches=1)[path[0]]
    assert torch.allclose(both.q[:, 1], cond.q[:, 0], atol=1e-5) and torch.allclose(
        both.q[:, 0], empty.q[:, 0], atol=1e-5
    )
    f = bb.extract(pixels, path, 300, "a photo", 0)[path[0]]
    m = aas.score_matrix(f, f, "cosine")
    assert torch.allclose(m.diagonal(), torch.ones(4), atol=1e-6) and torch.allclose(m, m.T, atol=1e-6)
    off = m[~torch.eye(4, dtype=torch.bool)]
    assert off.max() < 0.99 and off.max() - off.min() > 0.02


@pytest.mark.parametrize("block, t, prompt", [(1, 400, "a photo"), (2, 150, "the cat")])
def test_parity_with_float64_reference(pixart, pixels, block, t, prompt):
    variant, bb = pixart
    path = bb.resolve([block])[0]
    f = bb.extract(pixels[1:3], [path], t, prompt, 4)[path]
    got = float(aas.score(one(f, 0), one(f, 1), "cosine"))
    qa = pixart_qkv(bb.pipe, pixels[1:2], block, t, prompt, 4, MAX_LENGTH[variant])
    qb = pixart_qkv(bb.pipe, pixels[2:3], block, t, prompt, 4, MAX_LENGTH[variant])
    assert got == pytest.approx(pair_score(qa, qb), abs=1e-5)
    assert got < 0.99
    for mine, ref in zip((f.q, f.k, f.v), qa, strict=True):
        assert torch.allclose(mine[0].double(), ref, atol=1e-4 * float(ref.abs().max()))
