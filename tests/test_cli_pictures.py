"""`diffsim map` and `diffsim matrix`: files written at their sizes, numbers equal to the Python API."""

from __future__ import annotations

import csv
import io
import shutil

import pytest
import torch
from PIL import Image

from diffsim.cli.main import main
from diffsim.viz import figure_size

from .conftest import SIZE

pytest.importorskip("matplotlib")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def common(tiny_sd_path):
    return ["--model", str(tiny_sd_path), "--size", str(SIZE), "--device", "cpu"]


def test_map_writes_the_png_and_prints_the_score(capsys, common, image_files, tiny_metric, tmp_path):
    out = tmp_path / "sub" / "map.png"
    code, stdout, err = run(
        capsys, "map", str(image_files[0]), str(image_files[1]), "--out", str(out), "--layer", "up1", *common
    )
    assert code == 0, err
    score, layer, path = stdout.strip().split("\t")
    up1 = tiny_metric.with_settings(layer="up1")
    assert float(score) == pytest.approx(up1.score(image_files[0], image_files[1]), abs=1e-6)
    assert layer == "layer up1 (4x4 tokens)" and path == str(out)
    with Image.open(out) as im:
        assert im.size == (1000, 540)


def test_map_errors(capsys, common, image_files, tmp_path):
    code, _, err = run(
        capsys,
        "map",
        str(image_files[0]),
        str(image_files[1]),
        "-o",
        str(tmp_path / "m.png"),
        "--layer",
        "up0",
        "--layer",
        "up1",
        *common,
    )
    assert code == 2 and "2 layers" in err and "choose one" in err
    code, _, err = run(
        capsys, "map", str(image_files[0]), str(tmp_path / "nope.png"), "-o", str(tmp_path / "m.png"), *common
    )
    assert code == 2 and err.startswith("error: image file not found") and "nope.png" in err


def test_matrix_of_a_folder_to_stdout(capsys, common, image_files, tiny_metric, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in image_files[:3]:
        shutil.copy(p, folder / p.name)
    (folder / "notes.txt").write_text("not an image")
    code, stdout, err = run(capsys, "matrix", str(folder), *common, "-q")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(stdout)))
    files = sorted(str(folder / p.name) for p in image_files[:3])
    assert rows[0] == ["image", *files] and [r[0] for r in rows[1:]] == files
    got = torch.tensor([[float(v) for v in r[1:]] for r in rows[1:]])
    assert torch.allclose(got, tiny_metric.matrix(files), atol=1e-6)


def test_matrix_against_writes_png_and_csv(capsys, common, image_files, tiny_metric, tmp_path):
    png, table = tmp_path / "m.png", tmp_path / "m.csv"
    rows, cols = [str(p) for p in image_files[:2]], [str(p) for p in image_files[2:5]]
    code, stdout, err = run(
        capsys,
        "matrix",
        *rows,
        "--against",
        cols[0],
        "--against",
        cols[1],
        "--against",
        cols[2],
        "--out",
        str(png),
        "--csv",
        str(table),
        *common,
        "-q",
    )
    assert code == 0, err
    assert f"heat map: {png}" in stdout and f"csv: {table}" in stdout
    w, h = figure_size(2, 3)
    with Image.open(png) as im:
        assert im.size == (round(w * 100), round(h * 100)) == (598, 348)
    lines = list(csv.reader(table.open()))
    assert lines[0] == ["image", *cols] and len(lines) == 3
    got = torch.tensor([[float(v) for v in r[1:]] for r in lines[1:]])
    assert torch.allclose(got, tiny_metric.matrix(rows, cols), atol=1e-6)


def test_matrix_errors(capsys, common, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "matrix", str(empty), *common)
    assert code == 2 and "no images" in err and str(empty) in err
    code, _, err = run(capsys, "matrix", str(tmp_path / "missing"), *common)
    assert code == 2 and "not found" in err
    code, _, err = run(capsys, "matrix", str(empty), "--metric", "difsim-s", *common)
    assert code == 2
