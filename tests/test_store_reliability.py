"""Gallery store reliability (issue #18): degenerate pooled vectors, file modes, lost tables, model paths, merge."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffsim.errors import StoreError
from diffsim.gallery import GalleryStore, collect
from diffsim.gallery.build import build_index

from .test_gallery import SHARD, built, disc_metric, disc_model, labelled, make_metric, model_flags, run  # noqa: F401


def _copy_store(built: GalleryStore, tmp_path: Path) -> GalleryStore:  # noqa: F811
    shutil.copytree(built.folder, tmp_path / "s")
    return GalleryStore.open(tmp_path / "s")


def test_a_single_token_layer_gives_finite_pools_and_dedup_finds_the_twin(capsys, tmp_path, disc_model):  # noqa: F811
    g = tmp_path / "g"
    g.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(g / f"im{i}.png")
    shutil.copy(g / "im0.png", g / "twin.png")
    metric = make_metric(disc_model, layer="mid")  # latent 8 px: the mid block has one token
    feats = metric.embed([str(g / "im0.png")])
    assert next(iter(feats.tensors.values())).shape[-2] == 1
    assert torch.isfinite(metric.pool(feats)).all()
    out = tmp_path / "s"
    code, _, err = run(capsys, "index", "build", g, "--out", out, *model_flags(disc_model), "--layer", "mid", "-q")
    assert code == 0, err
    code, text, err = run(capsys, "dedup", "--index", out, "--threshold", 0.9999, "--neighbours", 3)
    assert code == 0, err
    assert "im0.png" in text and "twin.png" in text and "1 group(s)" in err


def test_a_store_refuses_a_non_finite_pooled_vector(tmp_path, disc_metric, rand_images):  # noqa: F811
    store = GalleryStore.create(tmp_path / "s", disc_metric)
    feats = disc_metric.embed(rand_images[:2])
    pooled = disc_metric.pool(feats).clone()
    pooled[1, 0] = float("nan")
    with pytest.raises(StoreError, match=r"non-finite pooled vector \(image 'b'"):
        store.write_shard(["a", "b"], ["/a", "/b"], ["h", "h"], feats, pooled)
    assert not list(store.shard_dir.glob("*.safetensors"))


def test_store_and_cache_files_honour_the_umask(tmp_path, labelled, disc_model):  # noqa: F811
    old = os.umask(0o022)
    try:
        metric = make_metric(disc_model, cache_dir=str(tmp_path / "cache"))
        metric.embed([str(labelled / "class-00" / "img-0000.png")])
        src = collect(labelled / "class-00")
        store = GalleryStore.create(tmp_path / "s", metric, root=src.root)
        build_index(src, store, metric, shard_size=SHARD)
    finally:
        os.umask(old)
    written = [p for p in [*store.folder.rglob("*"), *(tmp_path / "cache").rglob("*")] if p.is_file()]
    assert any(p.suffix == ".safetensors" and "cache" in p.parts for p in written)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in written}
    assert set(modes.values()) == {0o644}, modes


def test_a_truncated_table_names_the_recovery_and_a_rebuild_recovers_it(capsys, tmp_path, built, labelled):  # noqa: F811
    store = _copy_store(built, tmp_path)
    table = store.folder / "index.parquet"
    table.write_bytes(table.read_bytes()[:100])
    q = labelled / "class-01" / "img-0001.png"
    code, _, err = run(capsys, "retrieve", q, "--index", store.folder)
    assert code == 2 and err.count("\n") == 1
    assert "delete index.parquet and run `diffsim index build`" in err and "without embedding again" in err
    table.unlink()
    code, text, err = run(capsys, "index", "build", labelled, "--out", store.folder, "-q")
    assert code == 0 and "embedded 0" in text and "16 recovered" in text, err


def test_a_store_without_its_table_is_recovered_not_empty(capsys, tmp_path, built, labelled):  # noqa: F811
    store = _copy_store(built, tmp_path)
    (store.folder / "index.parquet").unlink()
    code, text, err = run(capsys, "index", "info", store.folder)
    assert code == 0 and "4 shard file(s)" in err and "recovers them" in err
    q = labelled / "class-01" / "img-0001.png"
    code, text, err = run(capsys, "retrieve", q, "--index", store.folder, "-k", 2, "--json")
    assert code == 0, err
    assert "recovered 16 image(s)" in err and json.loads(text.splitlines()[0])["path"] == "class-01/img-0001.png"


def test_a_relative_model_path_is_recorded_absolute(capsys, tmp_path, labelled, disc_model, monkeypatch):  # noqa: F811
    monkeypatch.chdir(disc_model.parent)
    out = tmp_path / "s"
    flags = model_flags(Path(disc_model.name))
    code, _, err = run(capsys, "index", "build", labelled / "class-00", "--out", out, *flags, "-q")
    assert code == 0, err
    settings = json.loads((out / "settings.json").read_text())
    assert settings["settings"]["model"] == str(disc_model.resolve())
    monkeypatch.chdir(tmp_path)
    q = labelled / "class-00" / "img-0002.png"
    code, text, err = run(capsys, "retrieve", q, "--index", out, "-k", 1)
    assert code == 0 and "class-00/img-0002.png" in text, err
    # the same relative model again: the store's settings still match
    monkeypatch.chdir(disc_model.parent)
    code, text, err = run(capsys, "index", "build", labelled / "class-00", "--out", out, *flags, "-q")
    assert code == 0 and "4 already stored" in text, err


def test_a_moved_model_is_named_without_a_hub_lookup(capsys, tmp_path, labelled, disc_model):  # noqa: F811
    model = tmp_path / "model"
    shutil.copytree(disc_model, model)
    out = tmp_path / "s"
    code, _, err = run(capsys, "index", "build", labelled / "class-00", "--out", out, *model_flags(model), "-q")
    assert code == 0, err
    model.rename(tmp_path / "moved")
    code, _, err = run(capsys, "retrieve", labelled / "class-00" / "img-0000.png", "--index", out)
    assert code == 2 and err.count("\n") == 1
    assert f"local model {model}, which is not there any more" in err and "--model" not in err


def test_merge_into_an_existing_store_adds_new_and_changed_images(capsys, tmp_path, labelled, disc_model):  # noqa: F811
    g = tmp_path / "g"
    shutil.copytree(labelled, g)
    extra = g / "class-03" / "img-0003.png"
    moved = tmp_path / "later.png"
    shutil.move(extra, moved)
    parts = str(tmp_path / "st.part{index}")
    flags = [*model_flags(disc_model), "-q", "--num-shards", "2"]
    for i in (0, 1):
        assert run(capsys, "index", "build", g, "--out", parts, *flags, "--shard-index", i)[0] == 0
    names = sorted(str(p) for p in tmp_path.glob("st.part*"))
    code, text, err = run(capsys, "index", "merge", *names, "--out", tmp_path / "st")
    assert code == 0 and "15 images" in text, err
    shutil.move(moved, extra)  # an appended image, and a changed one
    Image.open(g / "class-00" / "img-0000.png").rotate(90).save(g / "class-00" / "img-0000.png")
    for i in (0, 1):
        assert run(capsys, "index", "build", g, "--out", parts, *flags, "--shard-index", i)[0] == 0
    code, text, err = run(capsys, "index", "merge", *names, "--out", tmp_path / "st")
    assert code == 0 and "16 images" in text, err
    merged = GalleryStore.open(tmp_path / "st")
    whole = GalleryStore.create(tmp_path / "whole", make_metric(disc_model), root=str(g))
    build_index(collect(g), whole, make_metric(disc_model), shard_size=SHARD)
    assert merged.hashes() == whole.hashes()
    ids, vecs = merged.pooled()
    wid, wvecs = whole.pooled()
    order = [wid.index(i) for i in ids]
    assert np.allclose(vecs, wvecs[order], atol=1e-5)
    used = {r["shard"] for r in merged.rows()}
    assert {p.stem for p in merged.shard_dir.glob("*.safetensors")} == used  # no orphan shard files
