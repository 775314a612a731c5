"""Every Pillow mode reads as the picture it shows (or is refused); array/tensor dtypes; the pixel limit."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffsim.cli.main import main
from diffsim.errors import ImageError
from diffsim.images import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    SUPPORTED_MODES,
    as_list,
    max_pixels,
    set_max_pixels,
    to_unit_resized,
    to_unit_tensor,
)

S = 16
# the picture: a horizontal gray ramp 0..1 (what every encoding below must read back as)
RAMP = np.tile(np.linspace(0.0, 1.0, S, dtype=np.float64), (S, 1))


def _encode(mode: str) -> tuple[Image.Image, float]:
    """The ramp stored in ``mode`` and the read-back tolerance that mode's precision allows."""
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        dt = {"I;16B": ">u2", "I;16L": "<u2"}.get(mode, "=u2")
        return Image.frombytes(mode, (S, S), np.round(RAMP * 65535).astype(dt).tobytes()), 1e-4
    if mode == "I":
        return Image.fromarray(np.round(RAMP * 65535).astype(np.int32)), 1e-4
    if mode == "F":
        return Image.fromarray(RAMP.astype(np.float32)), 1e-6
    l8 = Image.fromarray(np.round(RAMP * 255).astype(np.uint8))
    if mode == "1":
        return Image.fromarray(RAMP >= 0.5), 0.0  # thresholded on purpose: its picture is black/white
    return l8.convert(mode), 1.5 / 255 if mode not in ("CMYK", "YCbCr", "HSV", "P", "PA") else 3.0 / 255


def _expected(mode: str) -> np.ndarray:
    return (RAMP >= 0.5).astype(np.float64) if mode == "1" else RAMP


@pytest.mark.parametrize("mode", [m for m in SUPPORTED_MODES if m != "RGBa"])
def test_every_supported_mode_reads_as_its_picture(mode, tmp_path):
    im, tol = _encode(mode)
    assert im.mode == mode
    got = to_unit_tensor(im, S).numpy()  # no resize at S: the exact read-back
    assert got.shape == (3, S, S)
    assert np.abs(got - _expected(mode)[None]).max() <= tol + 1e-6, mode
    if mode in ("YCbCr", "HSV"):
        return  # no lossless file format Pillow reads back in these modes; the in-memory read is the check
    fmt = {
        "F": "tiff",
        "I": "tiff",
        "CMYK": "tiff",
        "I;16B": "tiff",
        "I;16N": "tiff",
        "I;16L": "tiff",
        "RGBX": "tiff",
    }.get(mode, "png")
    path = tmp_path / f"ramp.{fmt}"
    try:
        im.save(path)
    except (OSError, KeyError, ValueError):
        return  # Pillow cannot write this mode to a file; the in-memory read above is the check
    got = to_unit_tensor(path, S).numpy()
    assert np.abs(got - _expected(mode)[None]).max() <= tol + 1e-6, (mode, Image.open(path).mode)


def test_16bit_png_and_float_tiff_samples(tmp_path):
    """The issue's samples: a 16-bit grayscale PNG was read 78% white, a float TIFF all black."""
    Image.fromarray(np.round(RAMP * 65535).astype(np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(RAMP.astype(np.float32)).save(tmp_path / "f.tif")
    Image.fromarray(np.round(RAMP * 255).astype(np.uint8)).save(tmp_path / "g8.png")
    ref = to_unit_tensor(tmp_path / "g8.png", 8)
    for name in ("g16.png", "f.tif"):
        x = to_unit_tensor(tmp_path / name, 8)
        assert abs(float(x.mean()) - 0.5) < 0.01
        assert (x - ref).abs().max() < 2 / 255
        assert (
            to_unit_resized(tmp_path / name, 12, 8) - to_unit_resized(tmp_path / "g8.png", 12, 8)
        ).abs().max() < 2 / 255


def test_out_of_range_and_unsupported_modes_are_refused_not_clipped(tmp_path):
    Image.fromarray(np.full((4, 4), 2.5, np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(ImageError, match=r"hdr.tif.*\[2.5, 2.5\].*does not clip"):
        to_unit_tensor(tmp_path / "hdr.tif", 8)
    with pytest.raises(ImageError, match="NaN"):
        to_unit_tensor(Image.fromarray(np.full((4, 4), np.nan, np.float32)), 8)
    with pytest.raises(ImageError, match=r"mode I.*-5\.\.70000"):
        to_unit_tensor(Image.fromarray(np.array([[-5, 70000]], np.int32)), 8)
    for mode in ("LAB", "La"):
        with pytest.raises(ImageError, match=f"unsupported image mode '{mode}'"):
            to_unit_tensor(Image.new(mode, (4, 4)), 8)


def test_array_and_tensor_dtypes_scale_by_their_range_or_are_refused():
    ramp16 = np.round(RAMP * 65535).astype(np.uint16)
    assert np.abs(to_unit_tensor(ramp16, S).numpy() - RAMP[None]).max() < 1e-4
    t8 = torch.from_numpy(np.round(RAMP * 255).astype(np.uint8)).expand(3, -1, -1)
    assert (to_unit_tensor(t8, S) - torch.from_numpy(RAMP).float()).abs().max() < 1 / 255
    assert torch.equal(to_unit_tensor(torch.ones(3, S, S, dtype=torch.bool), S), torch.ones(3, S, S))
    for bad in (np.zeros((4, 4), np.int32), torch.zeros(3, 4, 4, dtype=torch.int64)):
        with pytest.raises(ImageError, match="dtype int"):
            to_unit_tensor(bad, 8)
    with pytest.raises(ImageError, match=r"\[0, 1\].*\[0, 255\]"):
        to_unit_tensor(np.full((4, 4, 3), 200.0, np.float32), 8)


def test_non_image_python_values_raise_image_error(tiny_metric, image_files):
    for bad in (3.0, None, b"bytes"):
        with pytest.raises(ImageError, match="unsupported image type"):
            as_list(bad)
    with pytest.raises(ImageError, match="unsupported image type float"):
        tiny_metric.score(3.0, image_files[0])


# ------------------------------------------------------------------------------------------ pixel limit
def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims w x h (no real pixel data): what a decompression bomb looks like to open()."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    )
    return path


def test_pixel_limit_refuses_before_decoding_and_pillow_never_leaks(tmp_path, monkeypatch):
    assert max_pixels() == DEFAULT_MAX_PIXELS
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)  # Pillow alone: DecompressionBombError
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not appear either
        with pytest.raises(ImageError) as info:
            to_unit_tensor(bomb, 8)
        msg = str(info.value)
        assert "bomb.png" in msg and "20000 x 20000" in msg and "100,000,000" in msg
        assert "set_max_pixels(400000000)" in msg and MAX_PIXELS_ENV in msg and "--max-pixels" not in msg
        assert "--max-pixels 400000000" in info.value.for_cli()
        _png_header_only(tmp_path / "warn.png", 10000, 9000)  # Pillow alone: a raw warning; here: nothing
        with pytest.raises(ImageError, match="cannot read image"):  # under the limit: decoded (and truncated)
            to_unit_tensor(tmp_path / "warn.png", 8)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's own limit does not decide
    assert to_unit_tensor(tmp_path / "a.png", 8).shape == (3, 8, 8)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1199")
    with pytest.raises(ImageError, match="40 x 30 = 1,200 pixels, above the limit of 1,199"):
        to_unit_tensor(tmp_path / "a.png", 8)
    set_max_pixels(1200)
    try:
        assert to_unit_tensor(tmp_path / "a.png", 8).shape == (3, 8, 8)
    finally:
        set_max_pixels(None)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored


def test_cli_refuses_a_huge_image_in_one_line(tmp_path, capsys, tiny_sd_path, image_files):
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    code = main(["score", str(image_files[0]), str(bomb), "--model", str(tiny_sd_path), "--size", "64", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: image ")
    assert "--max-pixels 400000000" in err and "set_max_pixels" not in err
    small = tmp_path / "small.png"
    Image.new("RGB", (100, 70)).save(small)
    code = main(
        [
            "--max-pixels",
            "6000",
            "score",
            str(image_files[0]),
            str(small),
            "--model",
            str(tiny_sd_path),
            "--size",
            "64",
            "-q",
        ]
    )
    assert code == 2 and "100 x 70 = 7,000 pixels, above the limit of 6,000" in capsys.readouterr().err
    assert max_pixels() == DEFAULT_MAX_PIXELS  # the flag holds for one command only


def test_bench_records_a_too_large_image_and_goes_on(tmp_path):
    from diffsim.bench import EvalOptions, evaluate_2afc
    from diffsim.datasets import load_dataset

    from . import bench_fixtures as fx
    from .pixel_metric import PixelMetric

    ts = load_dataset("ipbench", fx.ipbench(tmp_path), protocol="script")
    big = Path(ts.root) / ts.triplets[0].negative
    Image.new("RGB", (40, 40), (255, 255, 255)).save(big)  # the fixtures are 16 x 16
    set_max_pixels(16 * 16)
    try:
        r = evaluate_2afc(PixelMetric(), ts, tmp_path / "run", EvalOptions(n_boot=50))
    finally:
        set_max_pixels(None)
    hit = [
        t
        for t in ts.triplets
        if big == Path(ts.root) / t.negative or big == Path(ts.root) / t.positive or big == Path(ts.root) / t.anchor
    ]
    assert r["n_errors"] == len(hit) >= 1 and r["n_triplets"] == len(ts.triplets) - len(hit)
    assert all("40 x 40 = 1,600 pixels" in e["error"] for e in r["errors"])


def test_bench_and_sweep_show_embedding_progress_per_image(tmp_path, capsys, tiny_metric):
    from diffsim.bench import EvalOptions, evaluate_2afc
    from diffsim.bench.sweep import sweep
    from diffsim.datasets import load_dataset

    from . import bench_fixtures as fx
    from .pixel_metric import PixelMetric

    ts = load_dataset("ipbench", fx.ipbench(tmp_path), protocol="script")
    distinct = len({p for t in ts.triplets for p in (t.anchor, t.positive, t.negative)})
    evaluate_2afc(PixelMetric(), ts, tmp_path / "run", EvalOptions(n_boot=20, progress=True))
    err = capsys.readouterr().err
    assert "embedding images" in err and f"/{distinct}" in err and "image/s" in err
    import dataclasses

    few = dataclasses.replace(ts, triplets=ts.triplets[:2])
    distinct = len({p for t in few.triplets for p in (t.anchor, t.positive, t.negative)})
    m = tiny_metric.with_settings(size=64)
    sweep(m, few, ["up0"], [500], tmp_path / "sweep", EvalOptions(n_boot=20, progress=True, batch_size=8))
    err = capsys.readouterr().err
    assert "step 500: embedding images" in err and f"/{distinct}" in err
