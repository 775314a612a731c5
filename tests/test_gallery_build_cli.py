"""`diffsim index build` where users meet it: threads, Ctrl-C, vanished and dangling files, removed images,
two builds of one store at once, and Ray staying quiet without -v."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import diffsim
from diffsim.gallery import GalleryStore, collect
from diffsim.gallery.build import build_index

from .scale_fixtures import make_gallery, shard_files

SIZE = 64
FAULTS = Path(__file__).with_name("shard_faults.py")  # test-side fault injection around the real CLI


@pytest.fixture()
def gallery(tmp_path) -> Path:
    return make_gallery(tmp_path / "gal", n=6)


@pytest.fixture(scope="module")
def metric(tiny_sd_path):
    from diffsim.registry import create_metric

    return create_metric("diffsim-s", model=str(tiny_sd_path), size=SIZE, device="cpu", dtype="float32")


def flags(model: Path) -> list[str]:
    return ["--model", str(model), "--size", str(SIZE), "--device", "cpu", "--dtype", "float32", "-q"]


def run(capsys, *args) -> tuple[int, str, str]:
    from diffsim.cli.main import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def cli_process(*args, wrapper: list[str | Path] | None = None, stderr: Any = subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(diffsim.__file__).parents[1])}
    env.pop("OMP_NUM_THREADS", None)
    head = [sys.executable, str(FAULTS), *map(str, wrapper)] if wrapper else [sys.executable, "-m", "diffsim"]
    return subprocess.Popen([*head, *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)


# ----------------------------------------------------------------------------------- threads
def test_threads_option_and_api(capsys, gallery, tiny_sd_path, metric, tmp_path):
    code, _, err = run(capsys, "index", "build", gallery, "--out", tmp_path / "s", *flags(tiny_sd_path), "--threads", 0)
    assert code == 2 and "--threads" in err and not (tmp_path / "s").exists()
    code, out, err = run(
        capsys, "-v", "index", "build", gallery, "--out", tmp_path / "s", *flags(tiny_sd_path), "--threads", 1
    )
    assert code == 0 and "this build embedded 6" in out, err
    assert "0 decode worker(s), 1 torch thread(s)" in err
    seen: list[int] = []
    before = torch.get_num_threads()
    store = GalleryStore.create(tmp_path / "api", metric, root=collect(gallery).root)
    build_index(collect(gallery), store, metric, threads=2, on_batch=lambda n: seen.append(torch.get_num_threads()))
    assert seen and set(seen) == {2} and torch.get_num_threads() == before  # set for the build, then restored
    from diffsim.errors import ConfigError

    with pytest.raises(ConfigError, match="threads must be a positive integer"):
        build_index(collect(gallery), store, metric, threads=0)


def test_default_threads_leave_cores_to_the_workers_and_to_other_work(monkeypatch):
    from diffsim.gallery import mapper

    monkeypatch.setattr(mapper, "usable_cores", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert mapper.threads_for(None, 0) == 8 and mapper.threads_for(None, 3) == 5 and mapper.threads_for(3, 7) == 3
    monkeypatch.setattr(os, "getloadavg", lambda: (6.8, 0.0, 0.0))  # a busy machine: 1 core idle
    assert mapper.threads_for(None, 0) == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (30.0, 0.0, 0.0))
    assert mapper.threads_for(None, 0) == 1


# ----------------------------------------------------------------------------------- Ctrl-C
@pytest.mark.slow  # a subprocess loads torch and the model
def test_ctrl_c_says_a_rerun_resumes_and_keeps_the_shards(gallery, tiny_sd_path, tmp_path, capsys):
    out = tmp_path / "s"
    args = ["index", "build", gallery, "--out", out, *flags(tiny_sd_path), "--shard-size", 2, "--batch-size", 2]
    proc = cli_process(*args, wrapper=["interrupt", "2"])  # SIGINT right after the 2nd shard file
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "rerun the same command to resume" in err
    # the first shard's rows were committed on the way out; the second shard is on disk, recovered by the rerun
    assert len(GalleryStore.open(out)) == 2 and len(shard_files(GalleryStore.open(out))) == 2
    code, text, err = run(capsys, *args)
    assert code == 0 and "this build embedded 2" in text and "2 recovered" in text, text + err
    assert "4 already stored" in text and len(GalleryStore.open(out)) == 6


# ----------------------------------------------------------------------------------- vanished files
def test_dangling_and_vanished_files_get_a_warning_line(capsys, gallery, tiny_sd_path, metric, tmp_path, caplog):
    (gallery / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    code, out, err = run(capsys, "index", "build", gallery, "--out", tmp_path / "s", *flags(tiny_sd_path))
    assert code == 0 and "this build embedded 6" in out and "1 unreadable" in out, err
    warned = [line for line in err.splitlines() if line.startswith("WARNING:")]
    assert warned == [
        f"WARNING: skipping {gallery / 'a' / 'gone.png'}: cannot read {gallery / 'a' / 'gone.png'}: broken "
        f"symbolic link (it points to {tmp_path / 'nowhere.png'}, which does not exist)"
    ]
    listed = collect(gallery)
    victim = gallery / "b" / "img-00.png"
    victim.unlink()  # deleted between the listing and the build
    store = GalleryStore.create(tmp_path / "api", metric, root=listed.root)
    report = build_index(listed, store, metric)
    assert report.embedded == 5
    reasons = dict(report.failures)
    assert "vanished during the build" in reasons[str(victim)]
    assert any("vanished during the build" in r.message for r in caplog.records if r.levelname == "WARNING")


# ----------------------------------------------------------------------------------- removed images
def test_a_rebuild_drops_images_removed_from_the_gallery(capsys, gallery, tiny_sd_path, tmp_path):
    out = tmp_path / "s"
    code, text, err = run(capsys, "index", "build", gallery, "--out", out, *flags(tiny_sd_path), "--shard-size", 2)
    assert code == 0, err
    removed = sorted((gallery / "a").glob("*.png"))
    for p in removed:
        p.unlink()
    code, text, err = run(capsys, "index", "build", gallery, "--out", out, "-q")
    assert code == 0 and f"{len(removed)} removed (no longer in the gallery)" in text, err
    store = GalleryStore.open(out)
    assert sorted(store.ids()) == sorted(s.id for s in collect(gallery)) and len(store) == 6 - len(removed)
    assert shard_files(store) == set(store.table().column("shard").to_pylist())  # emptied shards deleted
    query = gallery / "b" / "img-00.png"
    grid = tmp_path / "grid.png"
    code, text, err = run(capsys, "retrieve", query, "--index", out, "-k", 6, "--json", "--grid", grid)
    assert code == 0, err
    assert len(text.splitlines()) == 6 - len(removed)  # only images that exist: no blank tile in the grid
    assert not any(line for line in text.splitlines() if '"a/' in line)


# ----------------------------------------------------------------------------------- two builds at once
@pytest.mark.slow  # two subprocesses load torch and the model
def test_two_builds_of_one_store_take_turns(gallery, tiny_sd_path, tmp_path):
    out = tmp_path / "s"
    args = ["index", "build", gallery, "--out", out, *flags(tiny_sd_path), "--shard-size", 1]
    release = tmp_path / "release"
    first = cli_process(*args, wrapper=["hold", release])  # holds after its first shard until `release` exists
    deadline = time.monotonic() + 240
    while not list((out / "shards").glob("*.safetensors")) and time.monotonic() < deadline:
        time.sleep(0.2)
    log = tmp_path / "second.err"
    with log.open("w") as stderr:
        second = cli_process(*args, stderr=stderr)
        deadline = time.monotonic() + 240
        while "another build of" not in log.read_text() and second.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the first build is held: the second one must say that it waits
        release.touch()
        out2, _ = second.communicate(timeout=300)
    err2 = log.read_text()
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert "another build of" in err2, (out1, err1, out2, err2)
    assert "this build embedded 6" in out1, out1
    assert "another build of" in err2 and "waiting for it to finish" in err2
    assert "this build embedded 0" in out2 and "6 already stored" in out2, out2
    store = GalleryStore.open(out)
    assert len(store) == 6 and shard_files(store) == set(store.table().column("shard").to_pylist())


# ----------------------------------------------------------------------------------- Ray is quiet
@pytest.mark.slow  # starts a local Ray instance in a subprocess
def test_ray_logs_and_warnings_stay_hidden_without_v(gallery, tiny_sd_path, tmp_path):
    pytest.importorskip("ray")
    args = ["index", "build", gallery, "--out", tmp_path / "s", *flags(tiny_sd_path), "--engine", "ray"]
    proc = cli_process(*args, "--workers", "1")
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err
    assert "this build embedded 6" in out
    assert err.strip() == "", err
    shutil.rmtree(tmp_path / "s")
