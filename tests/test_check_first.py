"""Arguments and input paths are checked before any model loads; a cache hit shows with -vv."""

from __future__ import annotations

import shutil
import time

import pytest

from diffsim.cli.main import main
from diffsim.errors import ConfigError, LayerError, TimestepError
from diffsim.models import loaded_models


def weights_loaded() -> set:
    """Keys of the models whose weights are in memory (not the config-only stand-ins)."""
    return {k for k in loaded_models() if not (isinstance(k, tuple) and str(k[0]).endswith("-lazy"))}


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"ref": "no-such-file.png"}, "image file not found: no-such-file.png"),
        ({"cand": "{tmp}/notes.txt"}, "cannot read image {tmp}/notes.txt"),
        ({"flags": ["--size", "63"]}, "size must be a positive multiple of 8"),
        ({"flags": ["--batch-size", "0"]}, "--batch-size must be a positive integer; got 0"),
        ({"flags": ["--device", "nonsense"]}, "unknown device 'nonsense'"),
        ({"flags": ["--dtype", "fp8"]}, "unknown dtype 'fp8'"),
        ({"flags": ["--metric", "nope"]}, "unknown metric 'nope'"),
    ],
)
def test_default_hub_model_is_never_reached(bad, message, capsys, tmp_path, image_files, monkeypatch):
    """The default model is a Hub id that is not cached here: reaching it would be a slow model error."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # even so, a load attempt would say so; it must not happen
    (tmp_path / "notes.txt").write_text("not an image")
    ref = bad.get("ref", str(image_files[0])).format(tmp=tmp_path)
    cand = bad.get("cand", str(image_files[1])).format(tmp=tmp_path)
    before = weights_loaded()
    start = time.perf_counter()
    code, out, err = run(capsys, "score", ref, cand, *bad.get("flags", []))
    assert code == 2 and message.format(tmp=tmp_path) in err and err.count("\n") == 1, err
    assert "could not load" not in err and weights_loaded() == before
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize(
    "setting, error",
    [({"layer": "up9"}, LayerError), ({"step": 5000}, TimestepError), ({"timestep": 1000}, TimestepError)],
)
def test_local_model_configs_refuse_before_weights_load(setting, error, tmp_path, tiny_sd_path):
    from diffsim import create_metric

    model = shutil.copytree(tiny_sd_path, tmp_path / "m")  # not loaded yet in this process
    before = weights_loaded()
    with pytest.raises(error):
        create_metric("diffsim-s", model=model, size=64, device="cpu", **setting)
    assert weights_loaded() == before  # nothing was loaded


def test_python_settings_fail_before_loading(tmp_path, tiny_sd_path):
    from diffsim import create_metric

    model = shutil.copytree(tiny_sd_path, tmp_path / "m")
    before = weights_loaded()
    for kw, msg in (
        ({"size": 63}, "multiple of 8"),
        ({"device": "mps"}, "device='cpu'"),
        ({"batch_size": 0}, "batch_size"),
    ):
        with pytest.raises(ConfigError, match=msg):
            create_metric("diffsim-s", model=model, **kw)
    assert weights_loaded() == before


def test_cache_hit_is_visible_with_vv(capsys, tmp_path, tiny_sd_path, image_files):
    args = [
        "score",
        str(image_files[0]),
        str(image_files[1]),
        "--model",
        str(tiny_sd_path),
        "--size",
        "64",
        "--device",
        "cpu",
        "-q",
        "--cache",
        str(tmp_path / "cache"),
    ]
    code, out1, err = run(capsys, "-vv", *args)
    assert code == 0 and "served from the feature cache" not in err
    code, out2, err = run(capsys, "-vv", *args)  # a new metric: a new memory cache; the disk cache stays
    assert code == 0 and out2 == out1
    assert "2 of 2 distinct images served from the feature cache" in err


def _forget(model) -> None:
    """Drop this model from the shared-model registry (as in a new process), leaving the others shared."""
    from diffsim import models

    for key in [k for k in models.loaded_models() if str(model) in str(k)]:
        del models._MODELS[key]


def test_model_loads_lazily_when_every_feature_is_cached(capsys, tmp_path, tiny_sd_path, image_files):
    from diffsim import create_metric

    model = shutil.copytree(tiny_sd_path, tmp_path / "m")
    cache = tmp_path / "cache"
    kw = dict(model=model, size=64, device="cpu", cache_dir=str(cache))
    _forget(model)
    first = create_metric("diffsim-s", **kw)
    assert not first.backbone.weights_loaded  # configs only so far
    s1 = first.score(image_files[0], image_files[1])
    assert first.backbone.weights_loaded
    _forget(model)  # as in a new process
    again = create_metric("diffsim-s", **kw)
    assert again.score(image_files[0], image_files[1]) == s1
    assert not again.backbone.weights_loaded  # every feature came from the disk cache
    assert not [k for k in weights_loaded() if str(model) in str(k)]
    assert again.score(image_files[0], image_files[2]) != s1 and again.backbone.weights_loaded  # a miss loads it
    assert again.with_settings(layer="up1").layers != again.layers  # still answers once loaded
    assert [lay.path for lay in again.backbone.layers(64)] == [
        lay.path
        for lay in create_metric(
            "diffsim-s", model=shutil.copytree(model, tmp_path / "m2"), size=64, device="cpu"
        ).backbone.layers(64)
    ]
    # the CLI: a fully cached score prints the same number without loading the model
    _forget(model)
    capsys.readouterr()
    args = [
        "-vv",
        "score",
        str(image_files[0]),
        str(image_files[1]),
        "--model",
        str(model),
        "--size",
        "64",
        "--device",
        "cpu",
        "--cache",
        str(cache),
    ]
    code, out, err = run(capsys, *args)
    assert code == 0 and float(out) == pytest.approx(s1, abs=1e-6) and "loading" not in err
    assert not [k for k in weights_loaded() if str(model) in str(k)]


@pytest.mark.parametrize(
    "command", [["map", "{img}", "no-such.png", "--out", "{tmp}/m.png"], ["matrix", "{img}", "no-such.png"]]
)
def test_map_and_matrix_check_inputs_first(command, capsys, tmp_path, image_files, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = [a.format(img=image_files[0], tmp=tmp_path) for a in command]
    code, _, err = run(capsys, *args)
    assert code == 2 and "no-such.png" in err and "could not load" not in err, err
