"""Numeric options are checked before anything heavy runs (CLI and Python); an allocation failure is one line."""

from __future__ import annotations

import pytest

from diffsim.bounds import (
    MAX_SIZE,
    ResourceError,
    check_fits,
    check_float,
    check_seed,
    estimate_bytes,
    is_out_of_memory,
    out_of_memory,
)
from diffsim.cli.main import main
from diffsim.errors import ConfigError

from .conftest import SIZE


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def score_args(tiny_sd_path, image_files, *extra: str) -> list[str]:
    return ["score", str(image_files[0]), str(image_files[1]), "--model", str(tiny_sd_path), *extra]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (
            ("--size", "100000"),
            "--size must be an image size in 1..4096 pixels (a larger one cannot fit in memory); got 100000",
        ),
        (("--size", "0"), "--size must be an image size in 1..4096"),
        (("--seed", "99999999999999999999"), "--seed must be an integer with 0 <= seed < 2**63"),
        (("--seed", "-1"), "--seed must be an integer with 0 <= seed < 2**63 (e.g. 2334); got -1"),
        (("--batch-size", "0"), "--batch-size must be a positive integer; got 0"),
        (("--batch-size", "-3"), "--batch-size must be a positive integer"),
        (("--timestep", "-5"), "--timestep must be a non-negative integer; got -5"),
        (("--step", "-1"), "--step must be a non-negative integer; got -1"),
    ],
)
def test_score_options_are_usage_errors(capsys, tiny_sd_path, image_files, extra, needle):
    code, out, err = run(capsys, *score_args(tiny_sd_path, image_files, *extra))
    assert code == 2 and out == "" and err.startswith("error: ") and needle in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "args, needle",
    [
        (("dedup", "--index", "nowhere", "--threshold", "nan"), "--threshold must be a finite number; got nan"),
        (("dedup", "--index", "nowhere", "--threshold", "inf"), "--threshold must be a finite number; got inf"),
        (
            ("dedup", "--index", "nowhere", "--threshold", "0.9", "--neighbours", "0"),
            "--neighbours must be a positive integer; got 0",
        ),
        (("retrieve", "q.png", "--index", "nowhere", "-k", "0"), "--top-k must be a positive integer; got 0"),
        (
            ("retrieve", "q.png", "--index", "nowhere", "--prefilter", "-2"),
            "--prefilter must be a positive integer or auto; got -2",
        ),
        (("retrieve", "q.png", "--index", "nowhere", "--batch-size", "0"), "--batch-size must be a positive integer"),
        (("--max-pixels", "0", "list"), "--max-pixels must be a positive integer"),
        (("--max-pixels", "-5", "list"), "--max-pixels must be a positive integer"),
        (("index", "build", "g", "-o", "s", "--shard-size", "0"), "--shard-size must be a positive integer; got 0"),
        (("index", "build", "g", "-o", "s", "--workers", "-1"), "--workers must be a non-negative integer; got -1"),
        (("index", "build", "g", "-o", "s", "--num-shards", "0"), "--num-shards must be a positive integer; got 0"),
        (("index", "build", "g", "-o", "s", "--gpus-per-worker", "nan"), "must be a finite number"),
        (("map", "a.png", "b.png", "-o", "m.png", "--vmin", "nan"), "must be a finite number"),
        (("layers", "--size", "100000"), "--size must be an image size"),
        (("demo", "--port", "70000"), "--port must be a port number in 0..65535; got 70000"),
        (("index", "build", "g", "-o", "s", "--threads", "0"), "--threads must be a positive integer; got 0"),
        (
            ("retrieve", "q.png", "--index", "nowhere", "--prefilter", "auto", "--target-recall", "0"),
            "--target-recall must be a number in (0, 1]; got 0",
        ),
        (("retrieve", "q.png", "--index", "nowhere", "--recall-sample", "-1"), "must be a non-negative integer"),
        (("reproduce", "--root", "r", "--seed", "-1"), "--seed must be an integer with 0 <= seed < 2**63"),
        (("reproduce", "--root", "r", "--n-boot", "0"), "--n-boot must be a positive integer; got 0"),
    ],
)
def test_other_commands_refuse_bad_numbers_while_parsing(capsys, args, needle):
    code, out, err = run(capsys, *args)
    assert code == 2 and err.startswith("error: ") and needle in err and err.count("\n") == 1, err


def test_size_too_small_for_the_latent_is_refused_before_loading(capsys, tiny_sd_path, image_files):
    # a local folder loads its weights only for a missing feature: the size is refused before that
    code, out, err = run(capsys, *score_args(tiny_sd_path, image_files, "--size", "8"))
    assert code == 2 and err.startswith("error: size 8 is too small") and "at least 64" in err
    assert err.count("\n") == 1


def test_size_that_cannot_fit_is_refused_with_an_estimate(capsys, tiny_sd_path, image_files, monkeypatch):
    import diffsim.bounds as bounds

    monkeypatch.setattr(bounds, "available_bytes", lambda device=None: 2**30)  # a machine with 1 GiB free
    code, out, err = run(capsys, *score_args(tiny_sd_path, image_files, "--size", "1024", "--device", "cpu"))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "size 1024 with batch size 2 needs about" in err and "1.0 GiB is free" in err and "--size" in err


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory"),
        RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    ],
)
def test_allocation_failure_is_one_clean_line_in_cli_and_python(capsys, tiny_metric, image_files, monkeypatch, exc):
    def explode(*args, **kwargs):
        raise exc

    metric = tiny_metric.with_settings(cache_bytes=0)  # nothing served from memory: forward runs
    monkeypatch.setattr(type(metric), "forward", explode)
    with pytest.raises(ResourceError, match=r"^out of memory") as info:
        metric.score(image_files[0], image_files[1])
    assert "batch_size" in str(info.value)
    # the same failure through the CLI (in-process, the model from the fixture's folder)
    code, out, err = run(capsys, *score_args(metric.settings.model, image_files, "--size", str(SIZE)))
    assert code == 2 and out == "" and err.startswith("error: out of memory") and err.count("\n") == 1
    assert "--batch-size" in err and "internal error" not in err


def test_torch_out_of_memory_is_recognised():
    import torch

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert isinstance(out_of_memory(MemoryError()), MemoryError)  # still catchable as MemoryError


def test_python_api_bounds(tiny_sd_path):
    from diffsim import DiffSim

    for bad in ({"size": 8}, {"size": MAX_SIZE + 8}, {"seed": -1}, {"seed": 2**63}, {"batch_size": 0}):
        with pytest.raises(ConfigError):
            DiffSim.from_pretrained(tiny_sd_path, device="cpu", **bad)
    with pytest.raises(ConfigError, match="finite"):
        check_float("threshold", float("nan"))
    assert check_seed("seed", 2**63 - 1) == 2**63 - 1


def test_python_gallery_numbers(tmp_path):
    from diffsim.gallery.build import build_index

    for kwargs, name in (
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"shard_size": 0}, "shard_size"),
        ({"commit_every": float("nan")}, "commit_every"),
    ):
        with pytest.raises(ConfigError, match=name):
            build_index([], None, None, **kwargs)  # refused before the store or metric is touched


def test_estimate_grows_with_size_and_batch():
    assert estimate_bytes(1024, 2) == 4 * estimate_bytes(512, 2) == 8 * estimate_bytes(512, 1)
    check_fits(64, 1, "cpu")  # a tiny size always fits
