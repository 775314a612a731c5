"""Gallery stores, streaming builds and retrieval on a tiny discriminative SD-layout model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import diffsim
from diffsim import create_metric
from diffsim.errors import ImageError, StoreError
from diffsim.gallery import GalleryStore, collect
from diffsim.gallery.build import build_index
from diffsim.gallery.evaluate import evaluate
from diffsim.gallery.search import Gallery

from .conftest import SIZE
from .tiny_gallery import build_discriminative_pipeline, labelled_gallery, smooth_photo

SHARD = 5


@pytest.fixture(scope="session")
def disc_model(tmp_path_factory) -> Path:
    return build_discriminative_pipeline(tmp_path_factory.mktemp("disc-sd") / "model")


def make_metric(model: Path, **over):
    return create_metric("diffsim-s", model=str(model), size=SIZE, device="cpu", dtype="float32", **over)


@pytest.fixture(scope="session")
def disc_metric(disc_model):
    return make_metric(disc_model)


@pytest.fixture(scope="session")
def labelled(tmp_path_factory) -> Path:
    """4 classes x 4 augmentations of smooth random 'photos', 64 px PNGs in class folders."""
    rng = np.random.default_rng(1)
    return labelled_gallery(tmp_path_factory.mktemp("gallery") / "g", [smooth_photo(rng) for _ in range(4)], 4)


@pytest.fixture(scope="session")
def built(tmp_path_factory, labelled, disc_metric) -> GalleryStore:
    """The labelled gallery built once, uninterrupted, in shards of 5 images."""
    src = collect(labelled)
    store = GalleryStore.create(tmp_path_factory.mktemp("store") / "s", disc_metric, root=src.root)
    report = build_index(src, store, disc_metric, batch_size=3, shard_size=SHARD)
    assert report.embedded == 16 and report.skipped == 0 and not report.failures
    assert len(report.shards) == 4
    return store


def files(folder: Path) -> list[str]:
    return [s.path for s in collect(folder)]


def test_sources_walk_sorted_list_file_and_ids(tmp_path):
    for rel in ("b/2.png", "b/10.jpg", "a/x.png", "top.png", ".hidden/h.png", "a/notes.txt"):
        p = tmp_path / "g" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("txt"):
            p.write_text("x")
        else:
            Image.new("RGB", (8, 8)).save(p)
    src = collect(tmp_path / "g")
    assert [s.id for s in src] == ["a/x.png", "b/10.jpg", "b/2.png", "top.png"]
    assert [s.label for s in src] == ["a", "b", "b", None]
    (tmp_path / "g" / "list.txt").write_text("b/2.png\n# comment\n\ntop.png\n")
    lst = collect(tmp_path / "g" / "list.txt")
    assert [s.id for s in lst] == ["b/2.png", "top.png"] and lst.root == str((tmp_path / "g").resolve())
    expl = collect([tmp_path / "g" / "top.png"])
    assert expl.root is None and expl.items[0].id == str((tmp_path / "g" / "top.png").resolve())
    with pytest.raises(ImageError, match="gallery not found"):
        collect(tmp_path / "missing")


def test_ranking_equals_sorting_the_exact_matrix(built, disc_metric, labelled, tmp_path):
    gallery_files = files(labelled)
    ids = [s.id for s in collect(labelled)]
    rng = np.random.default_rng(7)
    queries = [str(tmp_path / f"q{i}.png") for i in range(3)]  # not in the gallery
    for _i, q in enumerate(queries):
        smooth_photo(rng, 64).save(q)
    queries.append(gallery_files[6])  # and one that is
    fresh = disc_metric.with_settings(cache_bytes=0)
    exact = fresh.matrix(queries, gallery_files)  # independent: everything embedded from the files
    gal = Gallery(built, disc_metric, block=3)  # blocks smaller than shards: the running top-k merges
    hits = gal.search(queries, k=16)
    for q, row in enumerate(hits):
        order = torch.argsort(exact[q], descending=True, stable=True)
        assert [h.rank for h in row] == list(range(1, 17))
        assert [h.path for h in row] == [ids[j] for j in order.tolist()]
        assert [h.score for h in row] == pytest.approx(exact[q][order].tolist(), abs=1e-5)
    assert hits[3][0].path == ids[6] and hits[3][0].score == pytest.approx(1.0, abs=1e-5)
    top3 = gal.search(queries, k=3)
    assert [[h.path for h in r] for r in top3] == [[h.path for h in r[:3]] for r in hits]
    # the prefilter with every image as a candidate is the exhaustive ranking; fewer candidates re-rank exactly
    full = gal.search(queries, k=5, prefilter=16)
    assert [[h.path for h in r] for r in full] == [[h.path for h in r[:5]] for r in hits]
    some = gal.search(queries, k=3, prefilter=6)
    for q, row in enumerate(some):
        scores = [h.score for h in row]
        assert scores == sorted(scores, reverse=True)
        for h in row:
            assert h.score == pytest.approx(float(exact[q][ids.index(h.path)]), abs=1e-5)


def test_distance_polarity_ranks_lowest_first(tmp_path, disc_model, labelled):
    mse = make_metric(disc_model, similarity="mse")
    assert not mse.higher_is_better
    sub = [
        labelled / "class-00" / "img-0000.png",
        labelled / "class-01" / "img-0001.png",
        labelled / "class-02" / "img-0002.png",
        labelled / "class-03" / "img-0003.png",
    ]
    src = collect(sub)
    store = GalleryStore.create(tmp_path / "s", mse)
    build_index(src, store, mse, shard_size=3)
    hits = Gallery(store, mse).search([str(sub[2])], k=4)[0]
    exact = mse.matrix([str(sub[2])], [str(p) for p in sub])[0]
    assert [h.score for h in hits] == pytest.approx(sorted(exact.tolist()), abs=1e-6)
    assert hits[0].path == str(sub[2].resolve()) and hits[0].score == pytest.approx(0.0, abs=1e-7)


def _features(store: GalleryStore) -> tuple[list[str], dict[str, torch.Tensor]]:
    f = store.load()
    return f.names, f.tensors


@pytest.mark.slow  # a subprocess loads torch and the model (~25 s on 2 busy cores)
def test_resume_after_a_kill_equals_an_uninterrupted_build(tmp_path, built, labelled, disc_model, disc_metric):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(diffsim.__file__).parents[1])}
    killer = Path(__file__).with_name("shard_faults.py")  # the fault is injected here, not in diffsim
    cmd = [
        sys.executable,
        str(killer),
        "kill",
        "2",
        "index",
        "build",
        str(labelled),
        "--out",
        str(out),
        "--model",
        str(disc_model),
        "--size",
        str(SIZE),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--shard-size",
        str(SHARD),
        "--batch-size",
        "3",
        "-q",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr  # SIGKILLed after writing 2 shards, before committing the table
    assert sorted(p.name for p in (out / "shards").glob("*.safetensors")) == [
        "shard-00000.safetensors",
        "shard-00001.safetensors",
    ]
    store = GalleryStore.open(out, disc_metric)
    committed = len(store)  # 0, unless the table was committed after the first shard (every 30 s)
    report = build_index(collect(labelled), store, disc_metric, batch_size=3, shard_size=SHARD)
    assert report.recovered == 2 * SHARD - committed and report.recovered >= SHARD  # the last shard: never committed
    assert (report.embedded, report.skipped) == (16 - 2 * SHARD, 2 * SHARD)
    ids, feats = _features(GalleryStore.open(out, disc_metric))
    ref_ids, ref = _features(built)
    assert ids == ref_ids
    for k in ref:
        torch.testing.assert_close(feats[k], ref[k], rtol=1e-4, atol=1e-5)  # batches differ after the resume
    assert [r["hash"] for r in GalleryStore.open(out).rows()] == [r["hash"] for r in built.rows()]


def _copy(built: GalleryStore, labelled: Path, tmp_path: Path) -> tuple[GalleryStore, Path]:
    shutil.copytree(built.folder, tmp_path / "store")
    shutil.copytree(labelled, tmp_path / "gallery")
    return GalleryStore.open(tmp_path / "store"), tmp_path / "gallery"


def test_rerun_embeds_nothing_append_embeds_only_new_and_changed(tmp_path, built, labelled, disc_metric):
    store, gal = _copy(built, labelled, tmp_path)
    again = build_index(collect(gal), store, disc_metric, shard_size=SHARD)
    assert (again.embedded, again.skipped, again.shards) == (0, 16, [])
    rng = np.random.default_rng(3)
    smooth_photo(rng, 64).save(gal / "class-01" / "new-a.png")
    smooth_photo(rng, 64).save(gal / "class-03" / "new-b.png")
    changed = gal / "class-02" / "img-0001.png"
    smooth_photo(rng, 64).save(changed)
    report = build_index(collect(gal), store, disc_metric, shard_size=SHARD)
    assert (report.embedded, report.skipped) == (3, 15)
    store = GalleryStore.open(tmp_path / "store", disc_metric)
    assert len(store) == 18 and sorted(store.ids()) == sorted(s.id for s in collect(gal))
    got = store.load(["class-02/img-0001.png", "class-01/new-a.png"])
    fresh = disc_metric.with_settings(cache_bytes=0).embed([str(changed), str(gal / "class-01" / "new-a.png")])
    for k in fresh.tensors:
        torch.testing.assert_close(got.tensors[k], fresh.tensors[k], rtol=1e-4, atol=1e-5)
    assert store.has("class-02/img-0001.png", store.hashes()["class-02/img-0001.png"])


def test_a_store_opened_with_other_settings_is_refused(built, disc_model, disc_metric, labelled):
    other = make_metric(disc_model, step=600)
    with pytest.raises(StoreError, match=r"other metric settings: .*timestep \(store: 501, given: 401\)"):
        GalleryStore.open(built.folder, other)
    with pytest.raises(StoreError, match="timestep"):
        build_index(collect(labelled), GalleryStore.open(built.folder), other)
    with pytest.raises(StoreError, match="compact='none', not 'fp16'"):
        GalleryStore.open(built.folder, disc_metric, compact="fp16")
    GalleryStore.open(built.folder, disc_metric)  # the same settings open


def test_a_corrupt_shard_is_named(tmp_path, built, labelled, disc_metric, caplog):
    store, _ = _copy(built, labelled, tmp_path)
    shard = store.shard_path("shard-00001")
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    gal = Gallery(GalleryStore.open(store.folder), disc_metric)
    with pytest.raises(StoreError, match=r"corrupt shard .*shard-00001\.safetensors: checksum mismatch"):
        gal.search([str(labelled / "class-00" / "img-0000.png")], k=3)
    # a shard no table lists (an interrupted build's) that safetensors cannot parse: skipped, named
    (store.shard_dir / "shard-00009.safetensors").write_bytes(b"not a safetensors file")
    with caplog.at_level("WARNING", logger="diffsim.gallery.store"):
        assert GalleryStore.open(store.folder).recover() == 0
    assert "corrupt shard" in caplog.text and "shard-00009.safetensors" in caplog.text


def test_unreadable_images_are_recorded_and_strict_stops(tmp_path, labelled, disc_metric):
    gal = tmp_path / "g"
    shutil.copytree(labelled / "class-00", gal / "class-00")
    (gal / "class-00" / "broken.png").write_bytes(b"not an image")
    store = GalleryStore.create(tmp_path / "s", disc_metric)
    report = build_index(collect(gal), store, disc_metric)
    assert report.embedded == 4 and [Path(p).name for p, _ in report.failures] == ["broken.png"]
    assert [Path(e["path"]).name for e in store.errors()] == ["broken.png"]
    with pytest.raises(ImageError, match="broken.png"):
        build_index(collect(gal), GalleryStore.create(tmp_path / "s2", disc_metric), disc_metric, strict=True)


def test_recall_at_k_and_map_on_a_labelled_gallery(built, disc_metric, labelled):
    res = evaluate(Gallery(built, disc_metric), ks=(1, 3))
    # independent: the full matrix from the files, leave-one-out, by hand
    srcs = list(collect(labelled))
    s = disc_metric.with_settings(cache_bytes=0).matrix([x.path for x in srcs])
    labels = [x.label for x in srcs]
    hit = {1: [], 3: []}
    aps = []
    for q in range(len(srcs)):
        order = [j for j in torch.argsort(s[q], descending=True, stable=True).tolist() if j != q]
        rel = [labels[j] == labels[q] for j in order]
        for k in hit:
            hit[k].append(any(rel[:k]))
        precisions = [sum(rel[: i + 1]) / (i + 1) for i, r in enumerate(rel) if r]
        aps.append(sum(precisions) / len(precisions))
    assert res["queries"] == 16 and res["classes"] == 4
    assert res["recall@1"] == pytest.approx(np.mean(hit[1]))
    assert res["recall@3"] == pytest.approx(np.mean(hit[3]))
    assert res["mAP"] == pytest.approx(np.mean(aps), abs=1e-6)
    rng = np.random.default_rng(0)  # mAP of random rankings: the tiny model must do better
    chance = []
    for _ in range(200):
        rel = rng.permutation([True] * 3 + [False] * 12)
        chance.append(np.mean([sum(rel[: i + 1]) / (i + 1) for i, r in enumerate(rel) if r]))
    assert res["mAP"] > np.mean(chance) + 0.05


def test_fp16_compact_store_agrees_with_exact_scores(tmp_path, built, labelled, disc_metric):
    src = collect(labelled)
    small = GalleryStore.create(tmp_path / "fp16", disc_metric, compact="fp16", root=src.root)
    build_index(src, small, disc_metric, shard_size=16)
    assert small.nbytes() < built.nbytes()
    q = [str(labelled / "class-01" / "img-0002.png")]
    exact = Gallery(built, disc_metric).search(q, k=16)[0]
    half = Gallery(GalleryStore.open(small.folder, disc_metric, compact="fp16"), disc_metric).search(q, k=16)[0]
    by_id = {h.path: h.score for h in half}
    assert max(abs(by_id[h.path] - h.score) for h in exact) < 2e-3
    assert [h.path for h in exact[:3]] == [h.path for h in half[:3]]


def test_shards_from_several_writers_get_distinct_names(tmp_path, disc_metric, rand_images):
    store = GalleryStore.create(tmp_path / "s", disc_metric)
    f = disc_metric.embed(rand_images)
    pooled = disc_metric.pool(f)
    a = store.write_shard(["a"], ["/a"], ["h"], f[:1], pooled[:1])
    b = GalleryStore.open(tmp_path / "s").write_shard(["b", "c"], ["/b", "/c"], ["h", "h"], f[1:], pooled[1:])
    named = store.write_shard(["d"], ["/d"], ["h"], f[:1], pooled[:1], name="worker-3-0007")
    assert (a.name, b.name, named.name) == ("shard-00000", "shard-00001", "worker-3-0007")
    with pytest.raises(FileExistsError):
        store.write_shard(["d"], ["/d"], ["h"], f[:1], pooled[:1], name="worker-3-0007")
    store.add_shard(a)
    store.commit()
    assert GalleryStore.open(tmp_path / "s").recover() == 3  # b and the named shard were never committed
    ids, vecs = GalleryStore.open(tmp_path / "s").pooled()
    assert ids == ["a", "b", "c", "d"] and np.allclose(vecs, pooled.numpy()[[0, 1, 2, 0]], atol=1e-6)


# ---------------------------------------------------------------------------------------------- CLI
def run(capsys, *args: str) -> tuple[int, str, str]:
    from diffsim.cli.main import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def model_flags(model: Path) -> list[str]:
    return ["--model", str(model), "--size", str(SIZE), "--device", "cpu", "--dtype", "float32"]


@pytest.mark.slow  # two CLI builds (~30 s on 2 busy cores)
def test_cli_build_retrieve_grid_and_dedup(capsys, tmp_path, built, labelled, disc_model, disc_metric):
    import json

    out = tmp_path / "store"
    code, text, err = run(
        capsys, "index", "build", labelled, "--out", out, *model_flags(disc_model), "-q", "--shard-size", 7
    )
    assert code == 0, err
    assert "16 images" in text and "embedded 16" in text
    code, text, err = run(capsys, "index", "build", labelled, "--out", out, "-q")  # the store's own metric
    assert code == 0 and "embedded 0" in text and "16 already stored" in text, err
    query = labelled / "class-02" / "img-0003.png"
    code, text, err = run(capsys, "retrieve", query, "--index", out, "--top-k", 4, "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in text.splitlines()]
    api = Gallery(built, disc_metric).search([str(query)], k=4)[0]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert [r["path"] for r in rows] == [h.path for h in api] and rows[0]["path"] == "class-02/img-0003.png"
    assert [r["score"] for r in rows] == pytest.approx([h.score for h in api], abs=1e-6)
    assert all(r["query"] == str(query) for r in rows)
    code, text, err = run(capsys, "retrieve", query, "--index", out, "-k", 2, "--csv", "--prefilter", 8)
    assert code == 0 and text.splitlines()[0].startswith("query,rank,path,score"), err
    assert [line.split(",")[2] for line in text.splitlines()[1:]] == [h.path for h in api[:2]]
    # a second store with another metric setting: one grid row per metric
    other = tmp_path / "store900"
    code, _, err = run(
        capsys, "index", "build", labelled / "class-00", "--out", other, *model_flags(disc_model), "--step", 900, "-q"
    )
    assert code == 0, err
    grid = tmp_path / "grid.png"
    code, text, err = run(capsys, "retrieve", query, "--index", out, "--index", other, "-k", 3, "--grid", grid)
    assert code == 0, err
    with Image.open(grid) as im:
        assert im.size == (4 * 160, 2 * (160 + 36))
    code, text, err = run(capsys, "retrieve", "--index", out, "--eval", "--json")
    assert code == 0 and json.loads(text)["queries"] == 16, err
    dd = tmp_path / "dedup"
    code, text, err = run(capsys, "dedup", "--index", out, "--threshold", 0.0, "--out", dd, "--neighbours", 15)
    assert code == 0, err
    assert "group 1 (16)" in text  # every pair passes a zero threshold: one group
    assert (dd / "groups.csv").read_text().count("\n") == 17 and (dd / "group-0001.png").exists()


def test_dedup_groups_match_a_brute_force_threshold(tmp_path, built, disc_metric):
    from scipy.sparse.csgraph import connected_components

    from diffsim.gallery.dedup import find_groups

    gal = Gallery(built, disc_metric)
    ids, s = gal.score_matrix(built.load())  # exact, all pairs
    threshold = float(torch.quantile(s[~torch.eye(len(ids), dtype=bool)], 0.9))
    res = find_groups(gal, threshold, neighbours=15)
    assert res.groups and res.candidates == 16 * 15 // 2
    _, comp = connected_components((s >= threshold).numpy(), directed=False)
    expected = {}
    for i, c in zip(ids, comp, strict=False):
        expected.setdefault(c, []).append(i)
    assert sorted(res.groups) == sorted(g for g in expected.values() if len(g) > 1)
    assert all(p[2] >= threshold for p in res.pairs)


@pytest.mark.parametrize("case", ["missing query", "missing store", "empty gallery", "missing gallery", "ensemble"])
def test_cli_errors_are_one_line_with_exit_2(capsys, tmp_path, built, case):
    empty = tmp_path / "empty"
    empty.mkdir()
    q = built.rows()[0]["path"]
    args, message = {
        "missing query": (["retrieve", tmp_path / "nope.png", "--index", built.folder], "query image not found"),
        "missing store": (["retrieve", q, "--index", tmp_path / "nostore"], "no gallery store at"),
        "empty gallery": (["index", "build", empty, "--out", tmp_path / "s"], "no images found"),
        # the paths are checked before the (missing) model would be loaded
        "missing gallery": (
            ["index", "build", tmp_path / "g", "--out", tmp_path / "s", "--model", tmp_path / "no-model"],
            "gallery not found",
        ),
        # a voting metric has no per-image features: refused before its members' models are loaded
        "ensemble": (
            ["index", "build", Path(q).parent, "--out", tmp_path / "s", "--metric", "ensemble"],
            "no per-image features",
        ),
    }[case]
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_store_of_unreadable_images_is_empty(capsys, tmp_path, disc_model):
    g = tmp_path / "g"
    g.mkdir()
    (g / "broken.png").write_bytes(b"not a png")
    code, text, err = run(capsys, "index", "build", g, "--out", tmp_path / "s", *model_flags(disc_model), "-q")
    assert code == 0 and "1 unreadable" in text, err
    Image.new("RGB", (8, 8)).save(tmp_path / "q.png")
    code, out, err = run(capsys, "retrieve", tmp_path / "q.png", "--index", tmp_path / "s")
    assert code == 2 and "is empty" in err and err.count("\n") == 1
    code, _, err = run(capsys, "index", "build", g, "--out", tmp_path / "s2", *model_flags(disc_model), "--strict")
    assert code == 2 and "broken.png" in err


def test_prefilter_without_faiss_names_the_extra(monkeypatch, built, disc_metric):
    from diffsim.errors import ConfigError

    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ConfigError, match=r'pip install "diffsim-metric\[faiss\]"'):
        Gallery(built, disc_metric).search(built.load(built.ids()[:1]), k=2, prefilter=4)


def test_grid_png_sizes(tmp_path, labelled):
    from diffsim.gallery.grid import ResultRow, group_grid, retrieval_grid

    f = [s.path for s in collect(labelled)]
    rows = [
        ResultRow(f[0], f[0], "diffsim-s", [(f[1], "a", 0.9), (f[2], "b", 0.8)]),
        ResultRow(f[3], f[3], "clip-i", [(f[4], "c", 0.7), (f[5], "d", 0.6)]),
    ]
    with Image.open(retrieval_grid(rows, tmp_path / "r.png", thumb=96)) as im:
        assert im.size == (3 * 96, 2 * (96 + 36))
    with Image.open(group_grid([(p, "x") for p in f[:7]], tmp_path / "g.png", thumb=64, cols=4)) as im:
        assert im.size == (4 * 64, 2 * (64 + 36))


def test_diffsim_pool_is_unit_norm_and_tracks_the_exact_ranking(built, disc_metric):
    f = built.load()
    p = disc_metric.pool(f)
    assert p.shape[0] == 16 and torch.allclose(p.norm(dim=1), torch.ones(16), atol=1e-5)
    torch.testing.assert_close(disc_metric.pool(f[3]), p[3:4])  # batch = single
    exact = disc_metric.compare_matrix(f, f)
    eye = torch.eye(16, dtype=torch.bool)
    nearest = exact.masked_fill(eye, -1).argmax(dim=1)

    def found(pooled: torch.Tensor) -> int:  # exact nearest neighbours among the 4 nearest pooled vectors
        top4 = (pooled @ pooled.T).masked_fill(eye, -1).topk(4, dim=1).indices
        return sum(int(n in t) for n, t in zip(nearest.tolist(), top4.tolist(), strict=False))

    from diffsim.metrics.base import FeatureMetric

    plain = FeatureMetric.pool(disc_metric, f)  # the base class's Q/K/V token means
    assert found(p) >= found(plain) and found(p) >= 12


def test_too_large_image_is_recorded_and_the_build_goes_on(tmp_path, labelled, disc_metric):
    """The pixel limit (issue 8) in a gallery build: recorded like any unreadable image, the rest embedded."""
    from diffsim.images import set_max_pixels

    gal = tmp_path / "g"
    shutil.copytree(labelled / "class-00", gal / "class-00")
    w, h = Image.open(next((gal / "class-00").iterdir())).size
    Image.new("RGB", (w + 40, h + 40)).save(gal / "class-00" / "huge.png")
    store = GalleryStore.create(tmp_path / "s", disc_metric)
    set_max_pixels(w * h)
    try:
        report = build_index(collect(gal), store, disc_metric)
    finally:
        set_max_pixels(None)
    assert report.embedded == 4 and [Path(p).name for p, _ in report.failures] == ["huge.png"]
    assert "above the limit" in report.failures[0][1]
