"""DiffSim-S on SD3 (``diffsim-s-sd3``) and PixArt (``diffsim-s-pixart``) through the public API on tiny real-class
pipelines: parity with the independent float64 references at 128 px, dispatch and kind detection, the CLI's
``layers``, ``score`` and ``index build``, steps, and ``as_loss``."""

from __future__ import annotations

import json

import pytest
import torch

import diffsim
from diffsim import ConfigError, create_metric
from diffsim.backbones.detect import detect_kind
from diffsim.loss import backbone_modules

from .reference_backbones import pair_score
from .reference_impl import load_pixels
from .reference_t2i import pixart_qkv, sd3_qkv
from .scale_fixtures import make_gallery
from .test_cli import run

SIZE = 128
CPU = {"device": "cpu", "dtype": "float32"}
#: kind -> (metric, metric class, layer path of block1, reference Q/K/V of one image)
KINDS = {
    "sd3": ("diffsim-s-sd3", "DiffSimSD3", "transformer_blocks.1.attn", sd3_qkv),
    "pixart": ("diffsim-s-pixart", "DiffSimPixArt", "transformer_blocks.1.attn1", pixart_qkv),
}


@pytest.fixture(scope="module", params=list(KINDS))
def kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def path(kind, tiny_backbone):
    return tiny_backbone(kind)


@pytest.fixture(scope="module")
def metric(kind, path):
    return create_metric(KINDS[kind][0], model=path, layer="block1", size=SIZE, **CPU)


def reference(kind: str, metric, files) -> float:
    """The float64 reference score of two image files at the metric's settings."""
    pipe, t, prompt = metric.backbone.pipe, metric.timestep, metric.prompt
    extra = (300,) if kind == "pixart" else ()  # PixArt-Sigma's T5 length
    a, b = (KINDS[kind][3](pipe, load_pixels(str(f), SIZE), 1, t, prompt, metric.seed, *extra) for f in files)
    return pair_score(a, b)


def test_metric_equals_the_float64_reference_with_spread_scores(kind, metric, image_files):
    assert metric.layers == [KINDS[kind][2]] and metric.timestep == 500 and metric.size == SIZE
    for pair in ((image_files[0], image_files[3]), (image_files[2], image_files[4])):
        assert metric.score(*pair) == pytest.approx(reference(kind, metric, pair), abs=1e-5)
    m = metric.matrix(image_files)
    off = m[~torch.eye(len(image_files), dtype=torch.bool)]
    assert torch.allclose(m.diagonal(), torch.ones(len(image_files)), atol=1e-5)
    assert off.max() < 0.99 and off.max() - off.min() > 0.02  # not all ~0.999


def test_dispatch_and_kind_detection(kind, path, tiny_sd_path):
    name, cls = KINDS[kind][:2]
    assert detect_kind(path) == kind
    over = {"layer": "block1", "size": SIZE, **CPU}  # (the default layers, block12 / block14, are the real models')
    for m in (diffsim.load(path, **over), create_metric("auto", model=path, **over)):
        assert type(m).__name__ == cls and m.name == name
    with pytest.raises(ConfigError, match=f"use {name}"):
        diffsim.DiffSim.from_pretrained(path, device="cpu")
    with pytest.raises(ConfigError, match="Stable Diffusion 1.x/2.x"):
        create_metric(name, model=tiny_sd_path, **CPU)


def test_steps_defaults_and_config(kind, metric):
    t900 = metric.with_settings(step=900).timestep
    assert t900 == (100 if kind == "sd3" else metric.backbone.step_table()[900])
    assert metric.with_settings(timestep=250).timestep == 250
    cfg = metric.config
    assert cfg["metric"] == KINDS[kind][0] and cfg["layers"] == [KINDS[kind][2]] and cfg["size"] == SIZE
    native = metric.with_settings(size=None)
    assert native.size == SIZE  # the tiny models' native size (the real ones: 1024)
    with pytest.raises(ConfigError, match="multiple of 16"):
        metric.with_settings(size=120)  # 8 (VAE) x 2 (patch)


def test_layers_command(kind, path, capsys):
    code, out, err = run(capsys, "layers", "--model", str(path), "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["alias"] for r in rows] == ["block0", "block1", "block2"]
    assert rows[1]["path"] == KINDS[kind][2] and rows[1]["tokens"] == 64 and rows[1]["grid"] == [8, 8]
    code, out, err = run(capsys, "layers", "--model", str(path), "--size", "256")
    assert code == 0 and "256 (16x16)" in out and "block0..block2" in out, err


def test_score_command_dispatches_without_metric(kind, metric, path, image_files, capsys):
    args = ["score", str(image_files[0]), str(image_files[3]), "--model", str(path), "--layer", "block1"]
    code, out, err = run(capsys, *args, "--size", str(SIZE), "--device", "cpu", "-q")
    assert code == 0, err
    assert float(out.split()[-1]) == pytest.approx(metric.score(image_files[0], image_files[3]), abs=1e-6)


def test_as_loss_is_one_minus_the_score_and_reaches_the_pixels(metric):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 8, 8, generator=g).chunk(2)
    x, y = (torch.nn.functional.interpolate(t, size=(SIZE, SIZE), mode="bilinear") for t in (x, y))
    loss = metric.as_loss(reduction="none")
    xr = x.clone().requires_grad_(True)
    value = loss(xr, y)
    assert torch.allclose(value.detach(), 1 - metric.score(x, y), atol=1e-5)
    value.sum().backward()
    assert xr.grad is not None and torch.isfinite(xr.grad).all() and float(xr.grad.abs().sum()) > 0
    params = [p for m in backbone_modules(metric.backbone) for p in m.parameters()]
    assert params and not any(p.requires_grad or p.grad is not None for p in params)


def test_gallery_build_and_search(kind, metric, path, tmp_path, capsys):
    gallery = make_gallery(tmp_path / "gal", n=4)
    out = tmp_path / "store"
    flags = [
        "--metric",
        KINDS[kind][0],
        "--model",
        str(path),
        "--layer",
        "block1",
        "--size",
        str(SIZE),
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]
    code, text, err = run(capsys, "index", "build", str(gallery), "--out", str(out), *flags, "-q")
    assert code == 0 and "this build embedded 4" in text, err
    from diffsim.gallery import GalleryStore

    assert GalleryStore.open(out).metric_name == KINDS[kind][0]
    query = sorted(gallery.rglob("*.png"))[0]
    code, text, err = run(capsys, "retrieve", str(query), "--index", str(out), "-k", "2", "--json")
    assert code == 0, err
    hits = [json.loads(line) for line in text.splitlines() if '"rank"' in line]
    assert hits[0]["path"].endswith(query.name) and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)  # itself
    assert hits[1]["score"] < 0.999
