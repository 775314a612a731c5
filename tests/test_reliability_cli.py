"""Every expected failure reaches the user as one line `error: ...` with exit code 2 (-v: the traceback)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from diffsim.cli.main import main
from diffsim.devices import available_devices, resolve_device
from diffsim.errors import ConfigError


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> bool:
    return code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


MISSING = [d for d in ("cuda", "cuda:7", "mps", "xpu") if d.split(":")[0] not in available_devices()]


@pytest.mark.parametrize("device", MISSING + ["gpu", "nonsense", "cuda:-1", "meta", "xla"])
def test_any_device_this_machine_lacks_is_one_config_error(device, capsys, tiny_sd_path, image_files):
    with pytest.raises(ConfigError, match="device='cpu'"):
        resolve_device(device)
    code, out, err = run(
        capsys,
        "score",
        str(image_files[0]),
        str(image_files[1]),
        "--model",
        str(tiny_sd_path),
        "--size",
        "64",
        "--device",
        device,
    )
    assert one_line_error(code, err) and "--device cpu" in err and "device='cpu'" not in err and out == ""


def test_cpu_and_default_device_resolve():
    assert resolve_device("cpu").type == "cpu" and resolve_device(None).type == available_devices()[0]


@pytest.mark.parametrize(
    "setup, message",
    [
        ({"unet/config.json": "{garbage"}, "not a valid JSON"),
        (
            {"unet/config.json": '{"_class_name": "UNet2DConditionModel", "block_out_channels": "x"}'},
            "could not read the U-Net of the diffusers folder",
        ),
        ({"unet/weights.bin": "x"}, "unet/ has no config.json"),  # no config at all: the part is named (#29)
        ({"vae/config.json": "{}"}, "missing unet/"),
        ({"model.safetensors": "junk"}, "could not read the single-file checkpoint"),
    ],
)
def test_layers_on_a_broken_model_is_one_line(setup, message, capsys, tmp_path):
    for rel, text in setup.items():
        (tmp_path / "m" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "m" / rel).write_text(text)
    target = tmp_path / "m" / "model.safetensors" if "model.safetensors" in setup else tmp_path / "m"
    code, out, err = run(capsys, "layers", "--model", str(target))
    assert one_line_error(code, err) and message in err and str(target) in err, err


def test_verbose_shows_the_traceback(capsys, tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{garbage")
    code, _, err = run(capsys, "-v", "layers", "--model", str(tmp_path))
    assert code == 2 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error: ")


def test_os_errors_are_one_line(capsys, tmp_path, image_files):
    (tmp_path / "file.txt").write_text("")
    out = tmp_path / "file.txt" / "report.md"  # its folder is a file
    res = tmp_path / "r.json"
    res.write_text(
        '{"dataset": "nights", "metric": {"name": "m"}, "accuracy": 0.5, "ci95": [0.4, 0.6], '
        '"n_triplets": 10, "protocol": "paper"}'
    )
    code, _, err = run(capsys, "report", str(res), "--output", str(out))
    assert one_line_error(code, err) and str(out) in err


def test_entry_point_subprocess_one_line(tmp_path):
    """The real `python -m diffsim` process: exit code 2 and one stderr line."""
    p = subprocess.run(
        [sys.executable, "-m", "diffsim", "layers", "--model", str(tmp_path / "nope" / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1 and p.stdout == ""


@pytest.mark.slow  # a fresh `python -m diffsim` process: ~30 s on a busy 2-core CPU
def test_stdout_carries_the_score_only(tmp_path, tiny_sd_path, image_files):
    """Loader chatter (diffusers' 'Defaulting to unsafe serialization' for .bin weights, prints, warnings)
    never reaches stdout, and not stderr either without -v."""
    import shutil

    from diffusers import AutoencoderKL, UNet2DConditionModel

    model = shutil.copytree(tiny_sd_path, tmp_path / "bin-model")
    for sub, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL)):
        net = cls.from_pretrained(tiny_sd_path, subfolder=sub)
        shutil.rmtree(model / sub)
        net.save_pretrained(model / sub, safe_serialization=False)  # pickle weights: diffusers warns loudly
    args = [
        sys.executable,
        "-m",
        "diffsim",
        "score",
        str(image_files[0]),
        str(image_files[1]),
        "--model",
        str(model),
        "--size",
        "64",
        "--device",
        "cpu",
    ]
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [p.stdout.strip()] and 0 < float(p.stdout) <= 1
    assert "unsafe serialization" not in p.stderr and "An error occurred" not in p.stderr


def test_loader_prints_go_to_stderr(capsys):
    from diffsim.backbones.loading import quiet_loading

    with quiet_loading():
        print("Downloading: 100%")
    out, err = capsys.readouterr()
    assert out == "" and "Downloading: 100%" in err


def test_ctrl_c_in_bench_says_rerun_resumes_and_it_does(tmp_path, capsys, monkeypatch):
    import json

    from . import bench_fixtures as fx
    from .pixel_metric import PixelMetric, register_test_metrics

    register_test_metrics()
    root = fx.ipbench(tmp_path)
    args = [
        "bench",
        "ipbench",
        "--root",
        str(root),
        "--metric",
        "test-pixel",
        "--protocol",
        "script",
        "--out",
        str(tmp_path / "run"),
        "-q",
    ]
    real = PixelMetric.embed
    calls = {"n": 0}

    def interrupted(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(PixelMetric, "embed", interrupted)
    import functools

    from diffsim.bench import EvalOptions

    # several small chunks, so that some finish (and are saved) before the interrupt
    monkeypatch.setattr("diffsim.bench.EvalOptions", functools.partial(EvalOptions, chunk_size=4, batch_size=4))
    code, out, err = run(capsys, *args)
    assert code == 130 and "rerun the same command to resume" in err and "Traceback" not in err
    monkeypatch.setattr(PixelMetric, "embed", real)
    code, out, err = run(capsys, *args)
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert code == 0 and res["resumed_triplets"] > 0 and res["n_triplets"] == 15
    monkeypatch.setattr("diffsim.cli.main.cli.main", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, _, err = run(capsys, "layers")
    assert code == 130 and err.strip() == "interrupted"
