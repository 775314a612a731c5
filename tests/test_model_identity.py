"""Feature cache keys name the weights actually loaded, not the ``--model`` text."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from diffsim.backbones.identity import hub_identity, local_identity, model_identity
from diffsim.cli.main import main

from .tiny_sd import build_tiny_pipeline


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny pipelines with different random weights, each in a folder named ``tiny`` under its own cwd."""
    root = tmp_path_factory.mktemp("two")
    return build_tiny_pipeline(root / "a" / "tiny", seed=1), build_tiny_pipeline(root / "b" / "tiny", seed=2)


def test_local_identity_follows_path_and_weights(tmp_path, two_models):
    a, b = two_models
    assert model_identity(a) == model_identity(a) and model_identity(a) != model_identity(b)
    assert str(a.resolve()) in model_identity(a)
    copy = shutil.copytree(a, tmp_path / "copy")
    before = local_identity(copy)
    w = next((copy / "unet").glob("*.safetensors"))
    os.utime(w, ns=(time.time_ns(), w.stat().st_mtime_ns + 1))
    assert local_identity(copy) != before  # touched weights: new identity (stat digest)
    same = local_identity(copy, content=True)
    os.utime(w, ns=(time.time_ns(), w.stat().st_mtime_ns + 1))
    assert local_identity(copy, content=True) != same  # mtime is part of the content digest too
    single = next((copy / "vae").glob("*.safetensors"))
    assert model_identity(single).startswith(f"local:{single.resolve()}#")


def test_hub_identity_is_the_cached_commit(tmp_path):
    folder = tmp_path / "models--org--name"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("a" * 40)
    (folder / "refs" / "v2").write_text("b" * 40)
    assert hub_identity("org/name", cache_dir=tmp_path) == f"hub:org/name@{'a' * 40}"
    assert hub_identity("org/name", "v2", cache_dir=tmp_path) == f"hub:org/name@{'b' * 40}"
    assert hub_identity("org/name", "c" * 40, cache_dir=tmp_path) == f"hub:org/name@{'c' * 40}"
    assert hub_identity("org/other", cache_dir=tmp_path).endswith("@main?")


def _score(capsys, monkeypatch, cwd: Path, a: Path, b: Path, cache: Path | None) -> float:
    monkeypatch.chdir(cwd)
    args = ["score", str(a), str(b), "--model", "tiny", "--size", "64", "--device", "cpu", "-q"]
    code = main(args + (["--cache", str(cache)] if cache else []))
    out, err = capsys.readouterr()
    assert code == 0, err
    return float(out)


def test_same_model_text_two_models_never_share_cache_entries(tmp_path, capsys, monkeypatch, two_models, image_files):
    a, b = two_models
    cache = tmp_path / "cache"
    im1, im2 = image_files[0], image_files[3]
    fresh_a = _score(capsys, monkeypatch, a.parent, im1, im2, None)
    fresh_b = _score(capsys, monkeypatch, b.parent, im1, im2, None)
    assert fresh_a != fresh_b  # the two models really differ
    assert _score(capsys, monkeypatch, a.parent, im1, im2, cache) == fresh_a
    assert _score(capsys, monkeypatch, b.parent, im1, im2, cache) == fresh_b  # not a's cached features
    assert _score(capsys, monkeypatch, a.parent, im1, im2, cache) == fresh_a
    assert len(list(cache.iterdir())) == 2  # one config folder per model identity

    # the same folder with its weights replaced (b's U-Net copied over a's): new identity, fresh features
    swapped = shutil.copytree(a, tmp_path / "c" / "tiny")
    before = _score(capsys, monkeypatch, swapped.parent, im1, im2, cache)
    assert before == fresh_a
    shutil.rmtree(swapped / "unet")
    shutil.copytree(b / "unet", swapped / "unet")
    after = _score(capsys, monkeypatch, swapped.parent, im1, im2, cache)
    assert after != before
    assert _score(capsys, monkeypatch, swapped.parent, im1, im2, None) == after


def test_backbones_expose_identity(tiny_metric, tiny_clip_path):
    from diffsim.backbones.torchvision_nets import load_features
    from diffsim.backbones.vit import ViTBackbone

    assert tiny_metric.backbone.identity == model_identity(tiny_metric.backbone.source)
    assert tiny_metric.feature_config()["model"] == tiny_metric.backbone.identity
    vit = ViTBackbone.from_pretrained(tiny_clip_path, "clip", device="cpu", dtype="float32")
    assert vit.identity == model_identity(tiny_clip_path) and vit.describe()["model"] == vit.identity
    r1, r2 = load_features("alexnet", None), load_features("alexnet", None)
    assert r1.identity != r2.identity  # random weights are never shared
