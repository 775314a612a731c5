"""A model reference that can only be a local path is refused as missing at once, never tried on the Hub."""

from __future__ import annotations

import time

import pytest

from diffsim.backbones.loading import classify, looks_local
from diffsim.cli.main import main
from diffsim.errors import ConfigError, ModelNotFoundError


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "text, local",
    [
        ("./model", True),
        ("../model", True),
        ("/abs/model", True),
        ("~/model", True),
        ("IP-Adapter", True),  # no owner/: not a Hub id of a diffusion model
        ("a/b/c", True),
        ("C:\\models\\sd", True),
        ("weights/sd15.safetensors", True),
        ("models/sd", True),  # ./models exists (made below): a local path
        ("stabilityai/stable-diffusion-2-1", False),
        ("nobody/no-such-model", False),
    ],
)
def test_looks_local(text, local, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert looks_local(text) is local


def test_missing_folder_under_an_existing_parent_is_not_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelNotFoundError, match="model path models/sd does not exist"):
        classify("models/sd")


@pytest.mark.parametrize("extra", [(), ("--step", "300")])
def test_cli_refuses_missing_local_model_at_once(capsys, tmp_path, monkeypatch, image_files, extra):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # a Hub attempt would wait on the network here
    (tmp_path / "models").mkdir()
    start = time.perf_counter()
    code, out, err = run(capsys, "score", str(image_files[0]), str(image_files[1]), "-m", "models/sd", *extra)
    assert code == 2 and err.startswith("error: model path models/sd does not exist") and err.count("\n") == 1
    assert "Hugging Face cache" not in err and time.perf_counter() - start < 10
    code, out, err = run(capsys, "layers", "-m", "models/sd")
    assert code == 2 and "model path models/sd does not exist" in err


def test_missing_ip_adapter_folder_is_refused_before_any_model_loads(capsys, tmp_path, monkeypatch, image_files):
    from diffsim import create_metric

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # the SD model does not exist either: the settings check names the IP-Adapter first, nothing loads
    for ip in ("IP-Adapter", "./IP-Adapter", str(tmp_path / "nowhere" / "IP-Adapter")):
        with pytest.raises(ModelNotFoundError, match=r"IP-Adapter folder .*IP-Adapter does not exist"):
            create_metric("diffsim-c", model="nobody/no-such-model", ip_adapter=ip)
    code, out, err = run(
        capsys,
        "score",
        str(image_files[0]),
        str(image_files[1]),
        "--metric",
        "diffsim-c",
        "--set",
        "ip_adapter=IP-Adapter",
    )
    assert code == 2 and err.startswith("error: IP-Adapter folder IP-Adapter does not exist") and err.count("\n") == 1


def test_ip_adapter_scale_nan_is_refused():
    from diffsim import create_metric

    with pytest.raises(ConfigError, match="scale must be a number >= 0"):
        create_metric("diffsim-c", model="nobody/no-such-model", ip_adapter="h94/IP-Adapter", scale=float("nan"))
