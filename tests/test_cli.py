"""The `diffsim` command line: outputs, and one-line errors with exit code 2."""

from __future__ import annotations

import csv
import io
import json

import pytest

from diffsim import __version__
from diffsim.cli.main import main

from .conftest import SIZE


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def common(tiny_sd_path):
    return ["--model", str(tiny_sd_path), "--size", str(SIZE), "--device", "cpu", "-q"]


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and __version__ in out


def test_score_two_images_prints_the_number(capsys, common, image_files, tiny_metric):
    code, out, err = run(capsys, "score", str(image_files[0]), str(image_files[1]), *common)
    assert code == 0, err
    assert float(out.strip()) == pytest.approx(tiny_metric.score(image_files[0], image_files[1]), abs=1e-6)


def test_score_many_json_and_csv(capsys, common, image_files):
    files = [str(p) for p in image_files[:3]]
    code, out, _ = run(capsys, "score", *files, *common, "--json", "--step", "900")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["b"] for r in rows] == files[1:]
    assert all(r["a"] == files[0] and r["timestep"] == 101 and r["step"] == 900 for r in rows)
    code, out, _ = run(capsys, "score", *files, *common, "--csv", "--step", "900")
    table = list(csv.DictReader(io.StringIO(out)))
    assert [float(r["score"]) for r in table] == pytest.approx([r["score"] for r in rows], abs=1e-9)


def test_layers_lists_aliases(capsys, tiny_sd_path):
    code, out, _ = run(capsys, "layers", "--model", str(tiny_sd_path), "--size", "64", "--json", "--kind", "self")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 16
    up0 = next(r for r in rows if r["alias"] == "up0")
    assert up0["path"] == "up_blocks.1.attentions.2.transformer_blocks.0.attn1" and up0["tokens"] == 4
    code, out, _ = run(capsys, "layers", "--model", str(tiny_sd_path))
    assert code == 0 and "up0=up_blocks.1.attentions.2.transformer_blocks.0.attn1" in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--layer", "up9"], "unknown attention layer 'up9'"),
        (["--step", "0"], "T=1000"),
        (["--timestep", "1000"], "out of range"),
        (["--step", "5", "--timestep", "5"], "either timestep"),
        (["--dtype", "float8"], "unknown dtype"),
    ],
)
def test_bad_options_exit_2_without_traceback(capsys, common, image_files, extra, message):
    code, out, err = run(capsys, "score", str(image_files[0]), str(image_files[1]), *common, *extra)
    assert code == 2 and message in err and "Traceback" not in err and err.startswith("error: ")


def test_missing_image_and_model(capsys, common, image_files, tmp_path):
    code, _, err = run(capsys, "score", str(image_files[0]), str(tmp_path / "none.png"), *common)
    assert code == 2 and f"image file not found: {tmp_path / 'none.png'}" in err
    code, _, err = run(capsys, "score", str(image_files[0]), str(image_files[1]), "--model", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err


def test_usage_errors(capsys, image_files):
    code, _, err = run(capsys, "score", str(image_files[0]))
    assert code == 2 and "Missing argument" in err


def test_score_any_metric_with_set(capsys, tiny_clip_path, image_files):
    from diffsim import create_metric

    a, b = str(image_files[0]), str(image_files[1])
    args = [
        "score",
        a,
        b,
        "--metric",
        "clip-aas",
        "--model",
        str(tiny_clip_path),
        "--device",
        "cpu",
        "-q",
        "--set",
        "size=32",
        "--set",
        "layer=0",
        "--set",
        "out_proj=true",
        "--json",
    ]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    row = json.loads(out)
    want = create_metric("clip-aas", model=tiny_clip_path, device="cpu", size=32, layer=0, out_proj=True).score(a, b)
    assert row["metric"] == "clip-aas" and row["score"] == pytest.approx(want, abs=1e-6)
    code, _, err = run(capsys, *args[:-1], "--set", "no_such=1")
    assert code == 2 and "unknown setting 'no_such'" in err and "valid settings" in err
    code, _, err = run(capsys, "score", a, b, "--metric", "clip-i", "--model", str(tiny_clip_path), "--layer", "up0")
    assert code == 2 and "--layer does not apply to metric 'clip-i'" in err
