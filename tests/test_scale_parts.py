"""Sharded builds without Ray: partitions from options or torchrun/SLURM variables, and `index merge`."""

from __future__ import annotations

import shutil
import sys

import pytest
from click.testing import CliRunner

from diffsim.cli.main import cli
from diffsim.errors import ConfigError, StoreError
from diffsim.gallery import GalleryStore, collect
from diffsim.gallery.build import build_index
from diffsim.scale import Partition, merge_stores, part_path, resolve_partition, select_part
from diffsim.scale.partition import part_of

from .scale_fixtures import assert_same_store, make_gallery, shard_files

SIZE = 64


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    return make_gallery(tmp_path_factory.mktemp("scale-gallery") / "gal")


@pytest.fixture(scope="module")
def metric(tiny_sd_path):
    from diffsim.registry import create_metric

    return create_metric("diffsim-s", model=str(tiny_sd_path), size=SIZE, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def whole(gallery, metric, tmp_path_factory):
    """The gallery built in one local build."""
    src = collect(str(gallery))
    store = GalleryStore.create(tmp_path_factory.mktemp("whole") / "store", metric, root=src.root)
    build_index(src, store, metric, shard_size=4)
    return store


# ----------------------------------------------------------------------------------- partitions
def test_partition_from_options_and_environment():
    assert resolve_partition(4, 2, {}) == Partition(4, 2)
    assert resolve_partition(1, 0, {}) is None  # one part: the whole build
    assert resolve_partition(None, None, {"WORLD_SIZE": "8", "RANK": "3"}) == Partition(8, 3)
    assert resolve_partition(None, None, {"SLURM_NTASKS": "5", "SLURM_PROCID": "4"}) == Partition(5, 4)
    assert resolve_partition(None, None, {"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert resolve_partition(None, None, {}) is None
    assert resolve_partition(3, 1, {"WORLD_SIZE": "8", "RANK": "3"}) == Partition(3, 1)  # options win
    with pytest.raises(ConfigError, match="0..3"):
        resolve_partition(4, 4, {})
    with pytest.raises(ConfigError, match="--shard-index"):
        resolve_partition(4, None, {})
    with pytest.raises(ConfigError, match="RANK=9"):
        resolve_partition(None, None, {"WORLD_SIZE": "4", "RANK": "9"})
    with pytest.raises(ConfigError, match="SLURM_NTASKS"):
        resolve_partition(None, None, {"SLURM_NTASKS": "x", "SLURM_PROCID": "0"})


def test_parts_cover_the_gallery_once_and_are_stable(gallery):
    src = collect(str(gallery))
    parts = [select_part(src, Partition(3, i)) for i in range(3)]
    ids = [s.id for p in parts for s in p]
    assert sorted(ids) == sorted(s.id for s in src) and len(ids) == len(set(ids))
    assert all(len(p) for p in parts)  # 10 images over 3 parts: none empty with this hash
    assert all(p.root == src.root for p in parts)
    # the part of an id does not depend on the other images
    assert [part_of(s.id, 3) for s in src] == [part_of(s.id, 3) for s in reversed(src.items)][::-1]
    assert part_path("out/store", Partition(3, 1)) == "out/store.part00001-of-00003"
    assert part_path("out/part-{index}-of-{count}", Partition(3, 1)) == "out/part-1-of-3"
    assert part_path("out/store", None) == "out/store"


# ----------------------------------------------------------------------------------- merge
def test_sharded_builds_merged_equal_one_build(gallery, metric, whole, tmp_path):
    src = collect(str(gallery))
    parts = []
    for i in range(3):
        sub = select_part(src, Partition(3, i))
        st = GalleryStore.create(tmp_path / f"p{i}", metric, root=src.root)
        report = build_index(sub, st, metric, shard_size=2)
        assert report.embedded == len(sub)
        parts.append(st.folder)
    merged = merge_stores(parts, tmp_path / "merged")
    assert_same_store(whole, merged)
    assert shard_files(merged) == set(merged.table().column("shard").to_pylist())
    assert GalleryStore.open(tmp_path / "merged", metric).root == src.root  # same settings as a direct build
    # the merged store is an ordinary store: a build on it embeds nothing
    again = build_index(src, GalleryStore.open(tmp_path / "merged"), metric)
    assert again.embedded == 0 and again.skipped == len(src)


def test_merge_refuses_overlaps_and_other_settings(gallery, metric, whole, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(whole.folder, copy)
    with pytest.raises(StoreError, match="in both"):
        merge_stores([whole.folder, copy], tmp_path / "m1")
    other = GalleryStore.create(tmp_path / "fp16", metric, compact="fp16", root=whole.root)
    with pytest.raises(StoreError, match="compact"):
        merge_stores([whole.folder, other.folder], tmp_path / "m2")
    with pytest.raises(StoreError, match="no gallery store"):
        merge_stores([whole.folder, tmp_path / "nothing"], tmp_path / "m3")
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m2").exists()


def test_cli_sharded_build_with_torchrun_variables_then_merge(gallery, tiny_sd_path, whole, tmp_path, monkeypatch):
    runner = CliRunner()
    out = str(tmp_path / "store")
    common = [
        "index",
        "build",
        str(gallery),
        "--out",
        out,
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
    r0 = runner.invoke(cli, common + ["--num-shards", "2", "--shard-index", "0"])
    assert r0.exit_code == 0, r0.output
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    r1 = runner.invoke(cli, common)
    assert r1.exit_code == 0, r1.output
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    p0, p1 = tmp_path / "store.part00000-of-00002", tmp_path / "store.part00001-of-00002"
    assert len(GalleryStore.open(p0)) + len(GalleryStore.open(p1)) == len(whole)
    rm = runner.invoke(cli, ["index", "merge", str(p0), str(p1), "--out", out])
    assert rm.exit_code == 0, rm.output
    assert f"{len(whole)} images from 2 part(s)" in rm.output
    assert_same_store(whole, GalleryStore.open(out))


def test_cli_merge_error_is_one_line(whole, tmp_path, capsys):
    from diffsim.cli.main import main

    assert main(["index", "merge", str(whole.folder), str(whole.folder), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "twice" in err and err.count("\n") == 1


def test_ray_engine_without_ray_names_the_extra(monkeypatch, tmp_path, capsys):
    from diffsim.scale.ray_engine import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"diffsim-metric\[ray\]"):
        require_ray()
    from diffsim.cli.main import main

    assert main(["index", "build", str(tmp_path), "--out", str(tmp_path / "s"), "--engine", "ray"]) == 2
    assert 'pip install "diffsim-metric[ray]"' in capsys.readouterr().err


def test_ray_engine_builds_no_part_and_an_input_kind_needs_its_files(gallery, tmp_path, capsys):
    from diffsim.cli.main import main

    assert main(["index", "build", str(gallery), "--out", str(tmp_path / "s"), "--input", "parquet"]) == 2
    assert f"error: no .parquet files in {gallery} (--input parquet)" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    r = CliRunner().invoke(
        cli,
        [
            "index",
            "build",
            str(gallery),
            "--out",
            str(tmp_path / "s"),
            "--engine",
            "ray",
            "--num-shards",
            "2",
            "--shard-index",
            "0",
        ],
    )
    assert r.exit_code != 0 and "--num-shards" in r.output
