"""Messages a user meets in the CLI say what is wrong and name the flag that fixes it."""

from __future__ import annotations

import shutil

import pytest

from diffsim.cli.main import main

from .conftest import SIZE


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "folder, reason",
    [
        ("/proc/self", "it is inside /proc, a virtual file system of the kernel that cannot hold files"),
        ("/proc/self/cache", "it is inside /proc"),
        ("/dev/null", "it is a device or special file, not a folder"),
    ],
)
def test_unusable_cache_folder_says_why(capsys, image_files, folder, reason):
    code, out, err = run(capsys, "score", str(image_files[0]), str(image_files[1]), "--cache", folder)
    assert code == 2 and err.startswith(f"error: feature cache folder {folder} cannot be used: {reason}")
    assert "--cache DIR" in err and err.count("\n") == 1


def test_cache_under_a_file_names_the_file(capsys, image_files, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    code, out, err = run(
        capsys, "score", str(image_files[0]), str(image_files[1]), "--cache", str(tmp_path / "notes.txt" / "c")
    )
    assert code == 2 and f"{tmp_path / 'notes.txt'} is a file, not a folder" in err


def test_component_folder_names_the_model_folder(capsys, tiny_sd_path):
    code, out, err = run(capsys, "layers", "-m", str(tiny_sd_path / "unet"))
    assert code == 2 and f"this is the unet/ part of a model: pass its parent folder {tiny_sd_path}" in err


def test_unreadable_unet_names_the_unet_folder(capsys, tmp_path, tiny_sd_path):
    model = shutil.copytree(tiny_sd_path, tmp_path / "m")
    (model / "unet" / "config.json").write_text("{garbage")
    code, out, err = run(capsys, "layers", "-m", str(model))
    assert code == 2 and f"(in {model / 'unet'})" in err


def test_gallery_skips_name_the_max_pixels_flag(capsys, tmp_path, tiny_sd_path, image_files):
    gallery = tmp_path / "g"
    gallery.mkdir()
    shutil.copy(image_files[0], gallery / "a.png")
    args = ["--max-pixels", "100", "index", "build", str(gallery), "-o", str(tmp_path / "s"), "-q"]
    code, out, err = run(capsys, *args, "-m", str(tiny_sd_path), "--size", str(SIZE), "--device", "cpu")
    assert code == 0 and "skipping" in err and "a.png" in err and "`diffsim --max-pixels" in err
    assert "set_max_pixels" not in err


def test_map_quiet_prints_nothing(capsys, tmp_path, tiny_sd_path, image_files):
    pytest.importorskip("matplotlib")
    out_png = tmp_path / "m.png"
    a, b = str(image_files[0]), str(image_files[1])
    common = ["-m", str(tiny_sd_path), "--size", str(SIZE), "--device", "cpu", "--layer", "up1"]
    code, out, err = run(capsys, "map", a, b, "-o", str(out_png), "-q", *common)
    assert code == 0 and out == "" and out_png.stat().st_size > 0
