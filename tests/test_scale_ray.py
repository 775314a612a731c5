"""The Ray engine on a local Ray instance (2 CPUs, started in this module): same store as the local engine,
reruns skip what is stored, a killed actor's batch is redone without lost or doubled rows, parquet input,
and `diffsim index build --engine ray`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

ray = pytest.importorskip("ray")

from diffsim.cli.main import cli  # noqa: E402
from diffsim.gallery import GalleryStore, collect  # noqa: E402
from diffsim.gallery.build import build_index  # noqa: E402
from diffsim.gallery.runner import run_build  # noqa: E402
from diffsim.scale.inputs import ray_input  # noqa: E402
from diffsim.scale.ray_engine import RayEngine, RayOptions  # noqa: E402
from diffsim.scale.worker import EmbedWorker  # noqa: E402

from .scale_fixtures import assert_same_store, make_gallery, shard_files  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance for the module (no cluster): 2 CPUs, no dashboard."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    return make_gallery(tmp_path_factory.mktemp("ray-gallery") / "gal")


@pytest.fixture(scope="module")
def metric(tiny_sd_path):
    from diffsim.registry import create_metric

    return create_metric("diffsim-s", model=str(tiny_sd_path), size=SIZE, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def local_store(gallery, metric, tmp_path_factory):
    src = collect(str(gallery))
    store = GalleryStore.create(tmp_path_factory.mktemp("local") / "store", metric, root=src.root)
    build_index(src, store, metric, shard_size=4)
    return store


@pytest.fixture(scope="module")
def ray_store(gallery, metric, tmp_path_factory):
    """The gallery built by two embedding actors, 3 images per shard; (store, report)."""
    src = collect(str(gallery))
    store = GalleryStore.create(tmp_path_factory.mktemp("ray") / "store", metric, root=src.root)
    report = run_build(ray_input(str(gallery)), store, metric, RayEngine(RayOptions(workers=2, shard_size=3)))
    return store, report


def test_ray_build_equals_local_build(ray_store, local_store):
    store, report = ray_store
    n = len(local_store)
    assert report.embedded == n and report.skipped == 0 and not report.failures
    assert_same_store(local_store, store, atol=1e-4)
    assert shard_files(store) == set(store.table().column("shard").to_pylist())  # no orphan shard
    assert len(shard_files(store)) == -(-n // 3)
    # the tolerance means something: two different images' features differ by far more
    f = store.load(store.ids()[:2])
    k = next(iter(f.tensors))
    assert (f.tensors[k][0] - f.tensors[k][1]).abs().max() > 1e-2


def test_rerun_skips_stored_images_and_embeds_new_or_changed_ones(ray_store, gallery, metric, local_store, tmp_path):
    store, _ = ray_store
    folder, gal = tmp_path / "store", tmp_path / "gal"
    shutil.copytree(store.folder, folder)
    shutil.copytree(gallery, gal)
    copy = GalleryStore.open(folder)
    before = {p.name: p.stat().st_mtime_ns for p in copy.shard_dir.glob("*.safetensors")}
    again = run_build(ray_input(str(gal)), copy, metric, RayEngine(RayOptions(workers=1, shard_size=3)))
    assert again.embedded == 0 and again.skipped == len(local_store)
    assert {p.name: p.stat().st_mtime_ns for p in copy.shard_dir.glob("*.safetensors")} == before
    # one new image and one changed image: only those two are embedded
    Image.new("RGB", (64, 64), (200, 40, 40)).save(gal / "a" / "new.png")
    changed = sorted((gal / "b").glob("*.png"))[0]
    Image.new("RGB", (64, 64), (40, 40, 200)).save(changed)
    third = run_build(ray_input(str(gal)), copy, metric, RayEngine(RayOptions(workers=1, shard_size=3)))
    assert third.embedded == 2 and third.skipped == len(local_store) - 1
    ids = copy.ids()
    assert len(ids) == len(set(ids)) == len(local_store) + 1
    cid = changed.relative_to(gal).as_posix()
    fresh = metric.embed([str(changed)])
    got = copy.load([cid])
    for k in fresh.tensors:
        np.testing.assert_allclose(got.tensors[k].numpy(), fresh.tensors[k].numpy(), atol=1e-4, rtol=1e-4)
    assert shard_files(copy) == set(copy.table().column("shard").to_pylist())


def killing_worker(marker: str) -> type:
    """An :class:`EmbedWorker` whose first batch, in one actor only, ends with a SIGKILL of the actor after
    its shard is written (the fault lives here: a class made at run time travels to Ray by value)."""

    class KillOnce(EmbedWorker):
        def __call__(self, batch):  # noqa: ANN001, ANN204
            import os
            import signal

            out = super().__call__(batch)
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # exactly one actor, once
            except FileExistsError:
                return out
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
            return out

    return KillOnce


def test_killed_worker_batch_is_redone_without_lost_or_doubled_rows(
    gallery, metric, local_store, tmp_path, monkeypatch
):
    import diffsim.scale.ray_engine as engine

    marker = tmp_path / "killed"
    monkeypatch.setattr(engine, "EmbedWorker", killing_worker(str(marker)))
    src = collect(str(gallery))
    store = GalleryStore.create(tmp_path / "store", metric, root=src.root)
    report = run_build(ray_input(str(gallery)), store, metric, RayEngine(RayOptions(workers=1, shard_size=4)))
    assert marker.exists(), "the actor was not killed: the test proves nothing"
    assert report.embedded == len(local_store)
    assert_same_store(local_store, store, atol=1e-4)  # every image once, features right
    assert shard_files(store) == set(store.table().column("shard").to_pylist())


def test_image_bytes_from_hugging_face_structs():
    from diffsim.scale.inputs import _image_bytes

    assert _image_bytes({"bytes": b"png", "path": "x.png"}) == b"png"
    assert _image_bytes(b"jpg") == b"jpg" and _image_bytes(None) == b""


def test_cli_engine_ray_reads_parquet_image_bytes(gallery, tiny_sd_path, local_store, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = collect(str(gallery))
    half = len(src) // 2
    for n, part in enumerate((src.items[:half], src.items[half:])):  # two files
        col = pa.array([Path(s.path).read_bytes() for s in part], pa.binary())
        pq.write_table(pa.table({"key": [s.id for s in part], "img": col}), tmp_path / f"part-{n}.parquet")
    out = tmp_path / "store"
    args = [
        "index",
        "build",
        str(tmp_path / "part-0.parquet"),
        str(tmp_path / "part-1.parquet"),
        "--out",
        str(out),
        "--engine",
        "ray",
        "--workers",
        "1",
        "--shard-size",
        "5",
        "--id-column",
        "key",
        "--image-column",
        "img",
        "--model",
        str(tiny_sd_path),
        "--size",
        str(SIZE),
        "--device",
        "cpu",
        "-q",
    ]
    from diffsim.cli.main import main

    assert main(args + ["--gpus-per-worker", "1"]) == 2  # no --dtype: refused before any store is made
    assert "--dtype" in capsys.readouterr().err and not out.exists()
    assert main(args + ["--gpus-per-worker", "1", "--dtype", "float32", "--out", str(tmp_path / "gpu")]) == 2
    assert "the Ray cluster has 0 GPU(s)" in capsys.readouterr().err  # a clear error, not a build waiting for ever
    args += ["--dtype", "float32"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert f"this build embedded {len(src)}" in r.output
    store = GalleryStore.open(out)
    order = sorted(store.ids())
    assert order == sorted(local_store.ids())
    fa, fb = local_store.load(order), store.load(order)
    for k in fa.tensors:
        np.testing.assert_allclose(fb.tensors[k].numpy(), fa.tensors[k].numpy(), atol=1e-4, rtol=1e-4)


def test_bench_engine_ray_scores_like_the_local_engine(tiny_sd_path, tmp_path, capsys):
    import json

    from diffsim.cli.main import main

    from . import bench_fixtures as fx

    root = fx.nights(tmp_path)
    common = [
        "bench",
        "nights",
        "--root",
        str(root),
        "--metric",
        "diffsim-s",
        "--model",
        str(tiny_sd_path),
        "--size",
        str(SIZE),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "-q",
    ]
    # NIGHTS has per-triplet prompts: one feature set per image cannot serve them
    assert main(common + ["--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "1"]) == 2
    assert "--no-dataset-prompts" in capsys.readouterr().err
    common.append("--no-dataset-prompts")
    assert main(common + ["--out", str(tmp_path / "local")]) == 0
    assert main(common + ["--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "1"]) == 0

    def records(run: str) -> dict:
        lines = (tmp_path / run / "triplets.jsonl").read_text().splitlines()
        return {r["id"]: r for r in map(json.loads, lines) if "s_pos" in r}

    local, rayed = records("local"), records("ray")
    assert local.keys() == rayed.keys() and len(local) > 0
    for k, r in local.items():
        assert rayed[k]["s_pos"] == pytest.approx(r["s_pos"], abs=1e-5)
        assert rayed[k]["s_neg"] == pytest.approx(r["s_neg"], abs=1e-5)
    res = json.loads((tmp_path / "ray" / "results.json").read_text())
    store = GalleryStore.open(tmp_path / "ray" / "features")
    assert len(store) == res["images_embedded"] > 0


def test_webdataset_shards_are_read_as_id_and_bytes(gallery, tmp_path):
    import tarfile

    from diffsim.scale.inputs import read_dataset

    files = sorted((gallery / "a").glob("*.png"))[:3]
    with tarfile.open(tmp_path / "shard-000.tar", "w") as tar:
        for f in files:
            tar.add(f, arcname=f"{f.stem}.png")
    inp = ray_input(str(tmp_path / "shard-000.tar"))
    assert inp.kind == "webdataset"
    rows = read_dataset(inp).take_all()
    assert {r["id"]: bytes(r["bytes"]) for r in rows} == {f"{f.stem}.png": f.read_bytes() for f in files}


def _fails(batch):
    from diffsim.errors import ModelNotFoundError

    raise ModelNotFoundError("model not found: /nowhere/sd15 (is the folder shared with every node?)")


def test_a_workers_diffsim_error_comes_back_as_one_line():
    from diffsim.errors import ModelNotFoundError
    from diffsim.scale.ray_engine import configure_context, worker_error

    configure_context(ray)
    with pytest.raises(Exception) as info:
        ray.data.range(2).map_batches(_fails).take_all()
    err = worker_error(info.value)
    assert isinstance(err, ModelNotFoundError) and type(err) is ModelNotFoundError
    assert str(err) == "on a Ray worker: model not found: /nowhere/sd15 (is the folder shared with every node?)"
    assert worker_error(ValueError("other")) is None


def test_parquet_without_the_named_columns_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from diffsim.errors import ConfigError
    from diffsim.scale.inputs import read_dataset

    pq.write_table(pa.table({"name": ["x"], "png": [b"\x89PNG"]}), tmp_path / "t.parquet")
    with pytest.raises(ConfigError, match=r"no column 'id' \(columns: name, png\).*--id-column"):
        read_dataset(ray_input(str(tmp_path / "t.parquet")))


def test_a_ray_failure_says_what_failed_in_one_line(gallery, tiny_sd_path, tmp_path, capsys, monkeypatch):
    """Ray exiting (or failing) while it starts is one `error:` line naming it, exit 2, never a silent exit 1."""
    from diffsim.cli.main import main

    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def dies(*_a, **_k):
        raise SystemExit(1)

    monkeypatch.setattr(ray, "init", dies)
    args = ["index", "build", str(gallery), "--out", str(tmp_path / "s"), "--engine", "ray", "--workers", "1"]
    args += ["--model", str(tiny_sd_path), "--size", str(SIZE), "--device", "cpu", "--dtype", "float32", "-q"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: starting Ray failed: Ray exited (status 1)"), err

    def breaks(*_a, **_k):
        raise RuntimeError("Failed to start the GCS\nmore detail")

    monkeypatch.setattr(ray, "init", breaks)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "starting Ray failed: RuntimeError: Failed to start the GCS;" in err[0], err
