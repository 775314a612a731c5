"""`diffsim layers` and `diffsim score` with SDXL and DiT models (tiny, random weights)."""

from __future__ import annotations

import json

import pytest

from .test_cli import run


@pytest.fixture(scope="module")
def models(tiny_sdxl_path, tiny_dit_path):
    return {"sdxl": tiny_sdxl_path, "dit": tiny_dit_path}


def test_layers_of_sdxl_name_every_transformer_block(capsys, models):
    code, out, _ = run(capsys, "layers", "--model", str(models["sdxl"]), "--size", "64", "--json", "--kind", "self")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    by_alias = {r["alias"]: r for r in rows}
    assert by_alias["up0"]["path"] == "up_blocks.0.attentions.2.transformer_blocks.2.attn1"
    assert by_alias["up0.a2.t0"]["path"] == "up_blocks.0.attentions.2.transformer_blocks.0.attn1"
    assert all(r["alias"] for r in rows)  # every self-attention has a name
    code, out, _ = run(capsys, "layers", "--model", str(models["sdxl"]))
    assert code == 0 and "at 1024x1024" in out and "up0.a2.t9" in out


def test_layers_of_dit(capsys, models):
    code, out, _ = run(capsys, "layers", "--model", str(models["dit"]), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["alias"] for r in rows] == ["block0", "block1", "block2"]
    assert rows[1]["path"] == "transformer_blocks.1.attn1" and rows[1]["tokens"] == 16  # native 64 px, patch 2


def test_score_with_an_sdxl_model(capsys, models, image_files):
    args = ["score", str(image_files[0]), str(image_files[1]), "--model", str(models["sdxl"])]
    code, out, err = run(capsys, *args, "--size", "64", "--device", "cpu", "-q")
    assert code == 0, err
    assert 0 < float(out.split()[-1]) < 1
    code, out, err = run(capsys, *args, "--size", "64", "--device", "cpu", "-q", "--json")
    assert code == 0, err
    assert json.loads(out)["metric"] == "diffsim-s-sdxl"  # detected from the model, reported as such


def test_score_with_a_dit_model_picks_the_dit_metric(capsys, models, image_files):
    args = ["score", str(image_files[0]), str(image_files[1]), "--model", str(models["dit"]), "--device", "cpu"]
    code, out, err = run(capsys, *args, "--layer", "block1", "-q", "--json")
    assert code == 0, err
    assert json.loads(out)["metric"] == "diffsim-dit"
    code, _, err = run(capsys, *args, "--metric", "diffsim-s", "-q")
    assert code == 2 and "is a DiT pipeline" in err and "diffsim-dit" in err  # an explicit metric is kept
