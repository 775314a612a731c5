"""The DiT backbone on a tiny random DiTPipeline: loading (hub layout), classes, noising, parity."""

from __future__ import annotations

import pytest
import torch

from diffsim import aas, create_metric
from diffsim.backbones.dit import DiTBackbone
from diffsim.errors import ConfigError, LayerError

from .conftest import SIZE
from .reference_backbones import abar, dit_qkv, pair_score
from .reference_impl import load_pixels

T = 150  # DiT's linear schedule: abar_150 ~ 0.75 (by T = 500 the latents are mostly noise)


@pytest.fixture(scope="module")
def dit_path(tiny_dit_path):
    return tiny_dit_path


@pytest.fixture(scope="module")
def dit(dit_path):
    return DiTBackbone.from_pretrained(dit_path, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def pixels(image_files):
    return torch.cat([load_pixels(str(p), SIZE) for p in image_files[:4]])


def test_hub_layout_loads_as_dit_transformer(dit):
    assert type(dit.transformer).__name__ == "DiTTransformer2DModel"  # config says Transformer2DModel
    assert dit.default_size == SIZE and dit.num_classes == 1000


def test_identity_symmetry_spread_and_batch(dit, pixels):
    layer = dit.resolve(["block1"])
    f = dit.extract(pixels, layer, T, 1, 0)[layer[0]]
    m = aas.score_matrix(f, f, "cosine")
    assert torch.allclose(m.diagonal(), torch.ones(4), atol=1e-6) and torch.allclose(m, m.T, atol=1e-6)
    off = m[~torch.eye(4, dtype=torch.bool)]
    assert off.max() < 0.999 and off.max() - off.min() > 5e-3
    for i in range(4):
        one = dit.extract(pixels[i : i + 1], layer, T, 1, 0)[layer[0]]
        assert torch.allclose(one.q[0], f.q[i], atol=5e-5 * float(f.q.abs().max()))


@pytest.mark.parametrize("layer, t, label", [("block1", T, 1), ("block2", 60, 207)])
def test_parity_with_float64_reference(dit, pixels, layer, t, label):
    path = dit.resolve([layer])[0]
    f = dit.extract(pixels[:2], [path], t, label, 4)[path]
    got = float(aas.score(f.__class__(f.q[:1], f.k[:1], f.v[:1]), f.__class__(f.q[1:], f.k[1:], f.v[1:]), "cosine"))
    qa = dit_qkv(dit.transformer, dit.vae, dit.scheduler, pixels[:1], path, t, label, 4)
    qb = dit_qkv(dit.transformer, dit.vae, dit.scheduler, pixels[1:2], path, t, label, 4)
    assert got == pytest.approx(pair_score(qa, qb), abs=2e-5)
    assert torch.allclose(f.q[0].double(), qa[0], atol=1e-4 * float(qa[0].abs().max()))


def test_guidance_pair_is_class_then_null(dit, pixels):
    path = dit.resolve(["block0"])
    both = dit.extract(pixels[:1], path, T, 1, 0)[path[0]]
    cond = dit.extract(pixels[:1], path, T, 1, 0, branches=1)[path[0]]
    null = dit.extract(pixels[:1], path, T, 999, 0, branches=1)[path[0]]
    assert both.q.shape[1] == 2 and torch.allclose(both.q[:, 0], cond.q[:, 0], atol=1e-5)
    assert not torch.allclose(cond.q, null.q, atol=1e-4)  # the class matters (adaLN modulation)


def test_class_labels_by_id_and_name(dit):
    assert dit.class_id(1) == dit.class_id("goldfish") == dit.class_id("Carassius auratus") == 1
    assert dit.class_id("207") == 207
    with pytest.raises(ConfigError, match="Did you mean 'goldfish'"):
        dit.class_id("goldfsh")
    with pytest.raises(ConfigError, match="out of range"):
        dit.class_id(1000)


def test_noise_uses_the_dits_own_schedule_and_the_same_t(dit):
    z0 = torch.randn(1, 4, 8, 8)
    _, eps = dit.noise(2, 8)
    a = abar(dit.scheduler, 400)  # linear 1e-4..0.02, not SD's scaled-linear
    assert torch.allclose(dit.model_input(z0, 400, 2), a**0.5 * z0 + (1 - a) ** 0.5 * eps, atol=1e-6)
    seen = []
    h = dit.transformer.transformer_blocks[0].norm1.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs.get("timestep", args[1] if len(args) > 1 else None)),
        with_kwargs=True,
    )
    try:
        dit.extract(torch.zeros(1, 3, SIZE, SIZE), dit.resolve(["block0"]), 400, 1, 0)
    finally:
        h.remove()
    assert seen and seen[0].tolist() == [400, 400]


def test_step_mapping_and_layers(dit):
    assert [dit.timestep(step=k) for k in (0, 500, 999)] == [999, 499, 0]  # DDIM: T = 999 - K
    rows = dit.layers(SIZE)
    assert [r.alias for r in rows] == ["block0", "block1", "block2"]
    assert rows[0].path == "transformer_blocks.0.attn1" and rows[0].tokens == 16 and rows[0].heads == 2
    assert dit.resolve(["block2", 2, "transformer_blocks.2.attn1"]) == ["transformer_blocks.2.attn1"]
    with pytest.raises(LayerError, match="block0..block2"):
        dit.resolve(["block7"])


def test_wrong_kind_errors(tiny_sd_path, dit_path):
    with pytest.raises(ConfigError, match="Stable Diffusion 1.x/2.x.*expected a DiT pipeline"):
        DiTBackbone.from_pretrained(tiny_sd_path, device="cpu")
    from diffsim import DiffSim

    with pytest.raises(ConfigError, match="is a DiT pipeline.*use diffsim-dit"):
        DiffSim.from_pretrained(dit_path, device="cpu")


# ---------------------------------------------------------------------------------------- the metric
@pytest.fixture(scope="module")
def metric(dit_path):
    return create_metric(
        "diffsim-dit",
        model=dit_path,
        layer="block1",
        timestep=T,
        class_label="goldfish",
        size=SIZE,
        device="cpu",
        dtype="float32",
        batch_size=2,
    )


def test_metric_parity_with_float64_reference(metric, image_files):
    bb = metric.backbone
    path = metric.layers[0]
    a, b = (load_pixels(str(p), SIZE) for p in (image_files[2], image_files[4]))
    qa = dit_qkv(bb.transformer, bb.vae, bb.scheduler, a, path, T, 1, metric.seed)
    qb = dit_qkv(bb.transformer, bb.vae, bb.scheduler, b, path, T, 1, metric.seed)
    assert metric.score(image_files[2], image_files[4]) == pytest.approx(pair_score(qa, qb), abs=2e-5)


def test_metric_config_and_label_names(metric, image_files):
    cfg = metric.config
    assert cfg["metric"] == "diffsim-dit" and cfg["class_id"] == 1 and cfg["timestep"] == T
    assert cfg["layers"] == ["transformer_blocks.1.attn1"]
    by_id = metric.with_settings(class_label=1)
    calls = metric.backbone.passes
    fa, fb = metric.embed(image_files[0]), by_id.embed(image_files[0])  # same class: one cached feature
    assert metric.backbone.passes - calls <= 1 and torch.equal(
        fa.tensors[next(iter(fa.tensors))], fb.tensors[next(iter(fb.tensors))]
    )
    other = metric.with_settings(class_label="tabby cat")
    assert other.class_id == 281
    with pytest.raises(ConfigError, match="different|other settings"):
        metric.compare(fa, other.embed(image_files[0]))
    assert metric.with_settings(step=850).timestep == 149  # DDIM: T = 999 - K
    with pytest.raises(ConfigError, match="multiple of 16"):
        metric.with_settings(size=56)  # 8 (VAE) x 2 (patch)


def test_native_size_by_default(dit_path):
    m = create_metric("diffsim-dit", model=dit_path, layer="block0", device="cpu", dtype="float32")
    assert m.size == 64 and m.timestep == 499  # default step 500
