"""The last internal errors and unclear messages of issue #29: each is one line ``error: ...`` and exit 2."""

from __future__ import annotations

import shutil
import time

import pytest
import torch

from diffsim import ImageError, ModelNotFoundError, create_metric
from diffsim.cli.main import main

from .conftest import SIZE
from .test_every_metric import tiny_overrides


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in err, err
    return lines[0]


def test_report_of_an_image_file(capsys, image_files):
    code, _, err = run(capsys, "report", str(image_files[0]))
    line = one_line_error(code, err)
    assert "cannot read results file" in line and "not a JSON text file" in line


def test_map_vmin_above_vmax_is_refused_before_any_model(capsys, image_files, tmp_path):
    start = time.monotonic()
    code, _, err = run(
        capsys, "map", str(image_files[0]), str(image_files[1]), "--out", str(tmp_path / "m.png"), "--vmin", "1",
        "--vmax", "0", "--model", str(tmp_path / "no-such-model"),
    )  # fmt: skip
    assert one_line_error(code, err) == "error: --vmin (1) must be below --vmax (0)"
    assert time.monotonic() - start < 5


@pytest.fixture()
def closed_hub(monkeypatch, tmp_path):
    """The Hub endpoint at a closed local port (HF_ENDPOINT, as a user behind a dead mirror has it); the
    client's retry back-off is skipped so that the test does not wait ~25 s."""
    import huggingface_hub.constants as constants
    import huggingface_hub.utils._http as http

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(http.time, "sleep", lambda s: None)


def test_download_offline_is_a_download_error_with_a_fix(capsys, closed_hub):
    code, _, err = run(capsys, "download", "--table", "1", "--metric", "clip-i")
    line = one_line_error(code, err)
    assert line.startswith("error: downloading openai/clip-vit-base-patch32 failed (")
    assert "ConnectError" in line and "HF_ENDPOINT" in line


def test_dataset_download_offline_is_one_line(capsys, closed_hub, tmp_path):
    code, _, err = run(capsys, "datasets", "download", "sref", "--root", str(tmp_path / "data"))
    line = one_line_error(code, err)
    assert "downloading dataset" in line and "HF_ENDPOINT" in line


def test_range_hint_only_where_it_fits():
    from diffsim.images import to_unit_tensor

    def message(x: torch.Tensor) -> str:
        with pytest.raises(ImageError) as info:
            to_unit_tensor(x, 8)
        return str(info.value)

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 8, 8, generator=g)
    assert "[0, 255]" not in message(x * 2) and "[-1, 1]" not in message(x * 2)  # a max of 2: no guess
    assert "divide by 255" in message(x * 255)
    assert "(x + 1) / 2" in message(x * 2 - 1)
    assert "[-1, 1]" not in message(x * 4 - 2)


def test_missing_vae_config_names_vae(capsys, tiny_sd_path, tmp_path, image_files):
    model = shutil.copytree(tiny_sd_path, tmp_path / "m")
    (model / "vae" / "config.json").unlink()
    a = str(image_files[0])
    code, _, err = run(capsys, "score", a, a, "--model", str(model), "--size", str(SIZE), "--device", "cpu")
    line = one_line_error(code, err)
    assert f"{model / 'vae'}/ has no config.json" in line


def test_store_of_another_metric_says_the_metric_first(capsys, tiny_model_paths, image_files, tmp_path):
    from diffsim.gallery import GalleryStore

    store = tmp_path / "store"
    GalleryStore.create(store, create_metric("diffsim-s", **tiny_overrides("diffsim-s", tiny_model_paths)))
    gallery = tmp_path / "g"
    gallery.mkdir()
    shutil.copy(image_files[0], gallery / "a.png")
    clip = tiny_model_paths["clip"]
    code, _, err = run(capsys, "index", "build", str(gallery), "--out", str(store), "--metric", "clip-i", "-m", clip)
    line = one_line_error(code, err)
    assert "holds diffsim-s features, not clip-i" in line and "--metric diffsim-s" in line


def test_float64_is_a_public_dtype_on_cpu(tiny_sd_path, image_files):
    from diffsim import ConfigError, DiffSim
    from diffsim.devices import resolve_dtype

    m = DiffSim.from_pretrained(str(tiny_sd_path), dtype=torch.float64, device="cpu", size=SIZE)
    assert m.dtype == torch.float64
    f = m.embed([str(image_files[0]), str(image_files[1])])
    assert all(t.dtype == torch.float64 for t in f.tensors.values())
    s = m.compare(f[0], f[1])
    assert 0 < float(s) < 1 and m.compare(f[0], f[0]).tolist() == [1.0]
    with pytest.raises(ConfigError, match="float64 runs on the CPU only"):
        resolve_dtype("float64", torch.device("cuda"))


def test_16_bit_runs_load_the_fp16_variant_where_present(tiny_sd_path, tmp_path, caplog):
    """A model saved with ``variant="fp16"`` beside its full files: float16 / bfloat16 runs read the fp16 files,
    float32 the full ones; a part without fp16 files falls back to its full files."""
    from diffusers import UNet2DConditionModel

    from diffsim.backbones.loading import load_components

    model = shutil.copytree(tiny_sd_path, tmp_path / "m")
    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    with torch.no_grad():
        for p in unet.parameters():
            p.mul_(2.0)  # the fp16 files differ from the full ones, so the test sees which were read
    unet.to(torch.float16).save_pretrained(model / "unet", variant="fp16")
    assert (model / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    full = next(UNet2DConditionModel.from_pretrained(model / "unet").parameters())
    for dtype in (torch.float16, torch.bfloat16):
        parts = load_components(model, dtype=dtype)
        got = next(parts.unet.parameters())
        assert got.dtype == dtype and torch.allclose(got.float(), (2 * full).to(dtype).float(), atol=1e-2)
        assert parts.vae.dtype == dtype  # vae/ has no fp16 files: its full files, cast
    got32 = next(load_components(model, dtype=torch.float32).unet.parameters())
    assert torch.equal(got32, full)
    with pytest.raises(ModelNotFoundError, match="fp16"):  # an explicit variant is strict: vae/ lacks it
        load_components(model, dtype=torch.float16, variant="fp16")
