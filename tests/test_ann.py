"""The persisted ANN index, the adaptive prefilter with measured recall, and row-sliced exact re-ranking."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from diffsim.gallery import GalleryStore, ann
from diffsim.gallery.search import Gallery

from .test_gallery import built, disc_metric, disc_model, labelled, model_flags, run  # noqa: F401

pytest.importorskip("faiss")  # the [faiss] extra: installed in CI (dev extra)


def _copy_store(built: GalleryStore, tmp_path: Path) -> GalleryStore:  # noqa: F811
    shutil.copytree(built.folder, tmp_path / "s", ignore=shutil.ignore_patterns("ann"))
    return GalleryStore.open(tmp_path / "s")


def synthetic_store(tmp_path: Path, metric, n: int, dim: int = 32, seed: int = 0) -> tuple[GalleryStore, np.ndarray]:  # noqa: F811
    """A store of ``n`` rows whose pooled vectors are clustered unit vectors (features: one image repeated)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, 8)).astype(np.float32) @ rng.standard_normal((8, dim)).astype(np.float32)
    vecs = centres[rng.integers(0, 30, n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store = GalleryStore.create(tmp_path / "syn", metric)
    one = metric.embed(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    for s in range(0, n, 500):
        m = min(n, s + 500) - s
        feats = type(one).cat([one] * m)
        ids = [f"img-{i:06d}" for i in range(s, s + m)]
        store.add_shard(store.write_shard(ids, ids, ["h"] * m, feats, vecs[s : s + m]))
    store.commit()
    return store, vecs


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivfpq"])
def test_every_kind_finds_the_true_neighbours(tmp_path, disc_metric, kind):  # noqa: F811
    store, vecs = synthetic_store(tmp_path, disc_metric, 3000)
    index = ann.build(store, kind)
    queries = vecs[:50] + 0.05 * np.random.default_rng(1).standard_normal((50, vecs.shape[1])).astype(np.float32)
    truth = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
    found = index.search_rows(queries, 10 if kind == "flat" else 60)  # approximate kinds: more candidates
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=False)])
    assert recall == 1.0 if kind == "flat" else recall >= 0.9, recall
    if kind != "ivfpq":  # quantised codes order the candidates roughly: the exact re-rank orders them
        assert (found[:, 0] == truth[:, 0]).mean() >= (1.0 if kind == "flat" else 0.8)
    info = json.loads((store.folder / "ann" / "ann.json").read_text())
    data = (store.folder / "ann" / "index.faiss").read_bytes()
    assert info["kind"] == kind and info["n"] == 3000 and info["checksum"] == hashlib.sha256(data).hexdigest()


def test_auto_kind_follows_the_size(monkeypatch):
    assert (
        ann.choose_kind(10) == "flat"
        and ann.choose_kind(200_000) == "hnsw"
        and ann.choose_kind(5_000_000) == "pcaivfpq"
    )


def test_the_index_is_saved_reused_extended_and_rebuilt(tmp_path, disc_metric, caplog):  # noqa: F811
    store, vecs = synthetic_store(tmp_path, disc_metric, 1000)
    with caplog.at_level(logging.INFO, logger="diffsim.gallery.ann"):
        first = ann.open_index(store, "hnsw")
        assert "building the ANN index" in caplog.text and first.info.kind == "hnsw"
        caplog.clear()
        again = ann.open_index(GalleryStore.open(store.folder))  # the stored kind, loaded as saved
        assert "building" not in caplog.text and again.info.kind == "hnsw" and len(again) == 1000
        # appended rows are added, not rebuilt
        one = disc_metric.embed(torch.rand(1, 3, 64, 64))
        store.add_shard(store.write_shard(["new"], ["new"], ["h"], one, vecs[:1]))
        store.commit()
        caplog.clear()
        grown = ann.open_index(GalleryStore.open(store.folder))
        assert "added 1 vectors" in caplog.text and "building" not in caplog.text
        assert grown.search(vecs[:1], 2)[0][:2] in (["img-000000", "new"], ["new", "img-000000"])
        # a replaced row moves in the table: rebuilt
        store.add_shard(store.write_shard(["img-000005"], ["x"], ["h2"], one, vecs[7:8]))
        store.commit()
        caplog.clear()
        ann.open_index(GalleryStore.open(store.folder))
        assert "the table's rows changed" in caplog.text
        # a corrupt index file: named, rebuilt
        path = store.folder / "ann" / "index.faiss"
        path.write_bytes(path.read_bytes()[:-8] + b"garbage!")
        caplog.clear()
        fixed = ann.open_index(GalleryStore.open(store.folder))
        assert "does not match its checksum" in caplog.text and len(fixed) == 1001


def test_prefilter_auto_reaches_the_target_and_reports_the_true_sample_recall(built, disc_metric, labelled):  # noqa: F811
    gal = Gallery(built, disc_metric)
    queries = [str(p) for p in sorted(labelled.rglob("*.png"))[::3]]
    fq = gal.embed(queries)
    ids, exact = gal.score_matrix(fq)
    k = 4
    top = [{ids[j] for j in torch.topk(exact[q], k).indices.tolist()} for q in range(len(queries))]
    # an independent recall: brute-force inner products of the pooled vectors
    pid, pooled = built.pooled()
    qv = disc_metric.pool(fq).numpy()
    order = np.argsort(-(qv @ pooled.T), axis=1)
    for n in (4, 8):
        hits = gal.search(fq, k=k, prefilter=n, names=queries, recall_sample=len(queries))
        want = np.mean([len(top[q] & {pid[j] for j in order[q, :n]}) / k for q in range(len(queries))])
        rep = gal.last_prefilter
        assert rep is not None and rep.candidates == n and rep.sample == len(queries)
        assert rep.estimated_recall == pytest.approx(want)
        assert [{h.path for h in row} for row in hits] == top  # the sample queries get their exact results
    hits = gal.search(fq, k=k, prefilter="auto", target_recall=1.0, recall_sample=2, names=queries)
    rep = gal.last_prefilter
    assert rep.estimated_recall == 1.0 and rep.sample == 2 and k <= rep.candidates <= 16
    with pytest.raises(Exception, match="recall-sample must be at least 1"):
        gal.search(fq, k=k, prefilter="auto", recall_sample=0)


def test_cli_ann_build_report_info_and_prefilter_meta(capsys, tmp_path, built, labelled, disc_model):  # noqa: F811
    out = tmp_path / "store"
    code, text, err = run(
        capsys, "index", "build", labelled, "--out", out, *model_flags(disc_model), "-q", "--ann", "hnsw"
    )
    assert code == 0, err
    assert "ANN index: hnsw over 16 vectors" in text and " MB, ready in " in text
    code, text, err = run(capsys, "index", "info", out, "--json")
    assert code == 0 and json.loads(text)["ann"]["kind"] == "hnsw", err
    code, text, err = run(capsys, "index", "build", labelled, "--out", out, "-q")  # keeps the store's kind
    assert code == 0 and "ANN index: hnsw over 16 vectors" in text, err
    q = labelled / "class-02" / "img-0001.png"
    code, text, err = run(capsys, "retrieve", q, "--index", out, "-k", 3, "--prefilter", "auto", "--json")
    assert code == 0, err
    lines = [json.loads(x) for x in text.splitlines()]
    meta = lines[0]["meta"]
    assert meta["estimated_recall"] == 1.0 and meta["sample"] == 1 and meta["target_recall"] == 0.95
    assert meta["ann"] == "hnsw" and [r["rank"] for r in lines[1:]] == [1, 2, 3]
    assert "estimated recall@3 1.000 on 1 sample query (target 0.95)" in err
    code, text, err = run(capsys, "retrieve", q, "--index", out, "-k", 3, "--prefilter", "3", "--recall-sample", "0")
    assert code == 0 and "recall not measured" in err, err
    for bad, msg in (("x", "must be a positive integer or auto; got x"), ("2", "must be at least --top-k (3)")):
        code, _, err = run(capsys, "retrieve", q, "--index", out, "-k", 3, "--prefilter", bad)
        assert code == 2 and msg in err


def test_rerank_reads_only_the_candidate_rows(monkeypatch, tmp_path, built, disc_metric, labelled):  # noqa: F811
    import safetensors

    store = _copy_store(built, tmp_path)
    real = safetensors.safe_open
    sliced: list[str] = []

    class RowsOnly:  # the real file, but a whole-tensor read fails the test
        def __init__(self, *a, **kw):
            self.fh = real(*a, **kw)

        def __enter__(self):
            self.fh.__enter__()
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

        def keys(self):
            return self.fh.keys()

        def get_slice(self, key):
            sliced.append(key)
            return self.fh.get_slice(key)

        def get_tensor(self, key):
            raise AssertionError(f"whole tensor {key} read")

    q = [str(labelled / "class-03" / "img-0002.png")]
    exact = Gallery(store, disc_metric).search(q, k=3)[0]
    monkeypatch.setattr(safetensors, "safe_open", RowsOnly)
    gal = Gallery(GalleryStore.open(store.folder), disc_metric)
    hits = gal.search(q, k=3, prefilter=16, recall_sample=0)[0]
    assert sliced and [h.path for h in hits] == [h.path for h in exact]
    assert [h.score for h in hits] == pytest.approx([h.score for h in exact], abs=1e-6)


def test_dedup_asks_the_ann_index_for_neighbours_only(tmp_path, built, disc_metric, monkeypatch):  # noqa: F811
    from diffsim.gallery.dedup import find_groups

    store = _copy_store(built, tmp_path)
    asked: list[int] = []
    real = ann.AnnIndex.search_rows

    def spy(self, vectors, n):
        asked.append(n)
        return real(self, vectors, n)

    monkeypatch.setattr(ann.AnnIndex, "search_rows", spy)
    res = find_groups(Gallery(store, disc_metric), threshold=0.0, neighbours=2)
    assert asked == [3] and 16 <= res.candidates <= 16 * 2  # never the 120 pairs


def test_searches_run_without_a_feature_cache(built):  # noqa: F811
    from diffsim.gallery.search import metric_for

    metric = metric_for(built, device="cpu")
    assert metric.settings.cache_bytes == 0 and metric.cache.max_bytes == 0
    assert metric_for(built, device="cpu", cache_bytes=1024).settings.cache_bytes == 1024


def test_pcaivfpq_reranks_its_pq_shortlist_with_scalar_codes(tmp_path, disc_metric):  # noqa: F811
    """pcaivfpq = PCA, IVF-PQ, then 8-bit scalar codes re-rank REFINE_FACTOR x the vectors asked for: the
    order of the candidates is the (projected) exact order, where PQ codes alone blur it."""
    store, vecs = synthetic_store(tmp_path, disc_metric, 3000, dim=320)  # > PCA_DIM: the PCA is fitted
    assert ann.build(store, "pcaivfpq").info.params["refine_bytes"] == ann.PCA_DIM
    index = ann.open_index(GalleryStore.open(store.folder))  # reopened as a search opens it (memory-mapped)
    refine = ann._refine_of(index.index)
    assert index.info.kind == "pcaivfpq" and refine is not None
    queries = vecs[:50] + 0.05 * np.random.default_rng(1).standard_normal((50, 320)).astype(np.float32)
    truth = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
    found = index.search_rows(queries, 20)
    assert refine.k_factor == ann.REFINE_FACTOR
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=False)])
    assert recall >= 0.9, recall
    assert (found[:, 0] == truth[:, 0]).mean() >= 0.9
    refine.k_factor = 1.0  # the PQ order alone, same lists (the index before the re-rank: 0.69 here)
    _, pq_only = index.index.search(np.ascontiguousarray(queries), 20)
    pq_recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, pq_only, strict=False)])
    assert recall >= pq_recall + 0.15, (recall, pq_recall)
