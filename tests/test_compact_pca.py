"""Projected compact stores (pcaR[-poolP]-int8): the projection, the store's record of it, re-ranking on decoded
rows (against a numpy decoder written here), eval-compact, and the older stores next to them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from diffsim.aas import QKV
from diffsim.aas import score as aas_score
from diffsim.errors import ConfigError, StoreError
from diffsim.features import Features
from diffsim.gallery import GalleryStore, collect
from diffsim.gallery.build import build_index
from diffsim.gallery.compact import PROJECTION_FILE, Projection, parse_mode, pool_tokens, unpool_tokens
from diffsim.gallery.search import Gallery
from diffsim.gallery.store import SCALE_SUFFIX
from diffsim.scale.merge import merge_stores

from .test_gallery import built, disc_metric, disc_model, labelled, model_flags, run  # noqa: F401

MODE = "pca8-pool2-int8"


@pytest.fixture(scope="module")
def pca_store(tmp_path_factory, labelled, disc_metric):  # noqa: F811
    src = collect(labelled)
    store = GalleryStore.create(tmp_path_factory.mktemp("pca") / "s", disc_metric, compact=MODE, root=src.root)
    report = build_index(src, store, disc_metric, batch_size=4, shard_size=5)
    assert report.embedded == 16 and len(report.shards) == 4
    return store


def test_mode_names_parse_and_bad_ones_are_named():
    assert parse_mode("pca64-pool2-int8") == parse_mode("pca64-pool2-int8")
    m = parse_mode("pca64-pool2-int8")
    assert (m.dims, m.pool, m.projected) == (64, 2, True) and not parse_mode("int8").projected
    for bad, said in [("pca0-int8", "at least 1"), ("pca8-pool1-int8", "at least 2"), ("pca8", "pcaR-poolP-int8")]:
        with pytest.raises(ConfigError, match=said):
            parse_mode(bad)


def test_full_rank_projection_reconstructs_up_to_the_int8_step():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, 3, 16, 4, generator=g) * torch.linspace(0.1, 3, 4) + 0.7  # C = 3 heads x 4 = 12
    feats = Features({"l/q": x, "l/mask": torch.rand(5, 16, generator=g)})
    proj = Projection.fit("pca12-int8", [feats[:2], feats[2:]])  # streamed over two batches
    assert proj.dims == {"l/q": 12} and proj.sample == 5 and proj.shapes["l/q"] == (2, 3, 16, 4)
    assert torch.allclose(proj.reconstruct("l/q", proj.project("l/q", x)), x, atol=1e-5)  # no quantisation: exact
    stored = proj.encode(feats)
    assert stored["l/q"].dtype == torch.int8 and stored["l/q"].shape == (5, 2, 16, 12)
    assert torch.equal(stored["l/mask"], feats.tensors["l/mask"])  # a tensor without channels is kept as is
    scale = stored["l/q" + SCALE_SUFFIX].float()
    back = proj.reconstruct("l/q", stored["l/q"].float() * scale)
    # an orthonormal basis: a token's error norm is at most the norm of its components' half steps
    err = (back - x).movedim(-2, -3).reshape(5, 2, 16, 12).norm(dim=-1)
    bound = (scale / 2).norm(dim=-1)
    assert (err <= bound + 1e-5).all() and err.max() > 0
    lossy = Projection.fit("pca3-int8", [feats])
    assert lossy.dims == {"l/q": 3}
    assert torch.equal(proj.truncate("pca3-int8").bases["l/q"], lossy.bases["l/q"])  # what eval-compact reuses
    a = lossy.reconstruct("l/q", lossy.project("l/q", x))
    assert (a - x).abs().max() > 0.1  # fewer components lose information


def test_pooled_tokens_repeated_over_their_cell_score_as_the_pooled_tokens():
    g = torch.Generator().manual_seed(1)
    a = QKV(*(torch.randn(1, 2, 16, 8, generator=g) for _ in range(3)))
    pooled = [pool_tokens(t, 2) for t in (torch.randn(1, 2, 16, 8, generator=g) for _ in range(3))]
    assert pooled[0].shape == (1, 2, 4, 8)
    direct = aas_score(a, QKV(*pooled))  # 16 tokens against 4
    repeated = aas_score(a, QKV(*(unpool_tokens(t, 2) for t in pooled)))
    assert torch.allclose(direct, repeated, atol=1e-6)
    cells = unpool_tokens(pooled[0], 2)
    assert torch.equal(pool_tokens(cells, 2), pooled[0])
    with pytest.raises(ConfigError, match="square token grid"):
        pool_tokens(torch.zeros(1, 12, 3), 2)


def test_store_records_the_mode_and_projection_and_reopens(pca_store, built, disc_metric):  # noqa: F811
    settings = json.loads((pca_store.folder / "settings.json").read_text())
    rec = settings["projection"]
    assert settings["compact"] == MODE and rec["sample"] == 16 and rec["file"] == PROJECTION_FILE
    assert set(rec["dims"].values()) == {8}
    again = GalleryStore.open(pca_store.folder, disc_metric, compact=MODE)
    proj = again.projection()
    assert proj is not None and proj.mode.name == MODE
    exact = built.load(built.ids())
    got = again.load(built.ids())
    assert {k: v.shape for k, v in got.tensors.items()} == {k: v.shape for k, v in exact.tensors.items()}
    assert pca_store.nbytes() < built.nbytes()
    with pytest.raises(StoreError, match="compact='pca8-pool2-int8', not 'int8'"):
        GalleryStore.open(pca_store.folder, compact="int8")


def test_a_damaged_projection_is_named(tmp_path, pca_store):
    folder = tmp_path / "s"
    shutil.copytree(pca_store.folder, folder)
    (folder / PROJECTION_FILE).write_bytes(b"\0" * 64)
    st = GalleryStore.open(folder)
    with pytest.raises(StoreError, match="corrupt projection .*checksum mismatch"):
        st.load(st.ids()[:1])
    (folder / PROJECTION_FILE).unlink()
    with pytest.raises(StoreError, match="cannot read the store's projection"):
        GalleryStore.open(folder).load(st.ids()[:1])


def _numpy_decode(store: GalleryStore, ids: list[str], heads: int) -> dict[str, np.ndarray]:
    """The stored rows of ``ids`` decoded with numpy from the raw files: codes * scale @ basis^T + mean,
    each pooled token repeated over its 2 x 2 cell, heads split back out."""
    from safetensors.numpy import load_file

    proj = load_file(str(store.folder / PROJECTION_FILE))
    where = {r["id"]: (r["shard"], r["row"]) for r in store.rows()}
    out: dict[str, list[np.ndarray]] = {}
    for i in ids:
        shard, row = where[i]
        raw = load_file(str(store.shard_path(shard)))
        for key in [k for k in raw if k.endswith("/q") or k.endswith("/k") or k.endswith("/v")]:
            z = raw[key][row].astype(np.float64) * raw[key + SCALE_SUFFIX][row].astype(np.float64)  # (B, T', R)
            x = z @ proj[key + "#basis"].T.astype(np.float64) + proj[key + "#mean"]  # (B, T', H*D)
            b, t, c = x.shape
            s = int(round(np.sqrt(t)))
            x = x.reshape(b, s, 1, s, 1, c).repeat(2, axis=2).repeat(2, axis=4).reshape(b, 4 * t, c)
            x = x.reshape(b, 4 * t, heads, c // heads).transpose(0, 2, 1, 3)  # (B, H, T, D)
            out.setdefault(key, []).append(x)
    return {k: np.stack(v) for k, v in out.items()}


def test_rerank_on_a_compact_store_equals_scoring_rows_decoded_with_numpy(pca_store, built, disc_metric):  # noqa: F811
    ids = pca_store.ids()
    queries = built.load(ids[:3])  # exact features as the queries
    cands = [ids[3:11], ids[5:16], ids[:6]]
    got = Gallery(pca_store, disc_metric).rerank(queries, cands, k=5)
    heads = queries.tensors[next(iter(queries.tensors))].shape[2]  # (N, branches, heads, tokens, channels)
    ref = {k: torch.from_numpy(v).float() for k, v in _numpy_decode(pca_store, ids, heads).items()}
    assert ref.keys() == built.load(ids[:1]).tensors.keys()
    decoded = Features(ref, pca_store.feature_config, ids)
    pos = {i: j for j, i in enumerate(ids)}
    for q, (row, cs) in enumerate(zip(got, cands, strict=True)):
        scores = disc_metric.compare_matrix(queries[q], decoded[[pos[c] for c in cs]])[0]
        want = sorted(zip(cs, scores.tolist(), strict=True), key=lambda t: -t[1])[:5]
        assert [i for i, _ in row] == [i for i, _ in want]
        assert np.allclose([s for _, s in row], [s for _, s in want], atol=1e-5)


def test_parts_fitted_apart_are_not_merged(tmp_path, labelled, disc_metric):  # noqa: F811
    parts = []
    for name in ("class-00", "class-01"):
        src = collect(labelled / name)
        st = GalleryStore.create(tmp_path / name, disc_metric, compact="pca4-int8", root=src.root)
        build_index(src, st, disc_metric, shard_size=8)
        parts.append(st.folder)
    with pytest.raises(StoreError, match="built with other projection"):
        merge_stores(parts, tmp_path / "merged")


def test_cli_eval_compact_prints_the_table_and_refuses_bad_input(capsys, tmp_path, built, pca_store):  # noqa: F811
    args = ["--sample", 8, "--mode", "int8", "--mode", MODE]
    code, text, err = run(capsys, "index", "eval-compact", built.folder, *args)
    assert code == 0, err
    lines = text.splitlines()
    assert lines[0].startswith("| mode | token bytes/image") and "top-10 agreement" in lines[0]
    rows = {ln.split("|")[1].strip(): ln for ln in lines if ln.startswith("| ") and "---" not in ln}
    assert set(rows) == {"mode", "none (float32, exact)", "int8", MODE}
    top = float(rows["int8"].split("|")[4])
    assert 0.9 <= top <= 1.0  # int8 keeps (almost) every top-7 of the 8-image sample
    assert "8 images sampled, each a query" in text
    code, text, err = run(capsys, "index", "eval-compact", built.folder, "--sample", 6, "--queries", 2, "--mode", MODE)
    assert code == 0 and "6 images sampled, 2 of them a query against the other 5" in text, err
    cases = [
        (["/no/such/store", "--sample", 4], "no gallery store at /no/such/store"),
        ([built.folder, "--sample", 17], "--sample 17 is larger than the store (16 images)"),
        ([built.folder, "--sample", 1], "--sample must be an integer of at least 2; got 1"),
        ([built.folder, "--sample", 4, "--mode", "pca8-int"], "compact must be none, fp16, int8, pcaR-int8"),
        ([pca_store.folder, "--sample", 4], "eval-compact needs exact features as the reference"),
        ([built.folder, "--sample", 4, "--queries", 5], "--queries 5 is larger than --sample 4"),
    ]
    for args, said in cases:
        code, _, err = run(capsys, "index", "eval-compact", *args)
        assert code == 2 and said in err and err.startswith("error:") and len(err.strip().splitlines()) == 1, err


def test_cli_build_takes_a_pca_mode_and_refuses_a_bad_one(capsys, tmp_path, labelled, disc_model):  # noqa: F811
    out = tmp_path / "s"
    g = labelled / "class-00"
    flags = [*model_flags(disc_model), "-q", "--compact", "pca4-int8"]
    code, _, err = run(capsys, "index", "build", g, "--out", out, *flags)
    assert code == 0, err
    code, text, _ = run(capsys, "index", "info", out)
    assert "compact: pca4-int8" in text
    code, _, err = run(capsys, "index", "build", g, "--out", tmp_path / "t", "-q", "--compact", "pca4-pool3-int9")
    assert code == 2 and err.startswith("error: compact must be") and len(err.strip().splitlines()) == 1


def test_an_existing_int8_store_without_a_projection_still_opens(tmp_path, built, labelled, disc_metric):  # noqa: F811
    src = collect(labelled / "class-02")
    st = GalleryStore.create(tmp_path / "old", disc_metric, compact="int8", root=src.root)
    build_index(src, st, disc_metric, shard_size=8)
    settings = json.loads((st.folder / "settings.json").read_text())
    assert "projection" not in settings and not (st.folder / PROJECTION_FILE).exists()
    again = GalleryStore.open(st.folder, disc_metric)
    assert again.projection() is None and not again.needs_projection
    from safetensors.torch import load_file

    raw = load_file(str(st.shard_path(st.rows()[0]["shard"])))
    key = next(k for k in raw if k.endswith("/q"))
    want = raw[key].float() * raw[key + SCALE_SUFFIX].float()  # the int8 decoding as it always was
    assert torch.equal(again.load(again.ids()).tensors[key], want)


def test_ray_refuses_a_pca_store_before_its_projection_is_fitted(tmp_path, labelled, disc_metric):  # noqa: F811
    from diffsim.gallery.readers import files_input
    from diffsim.gallery.runner import run_build
    from diffsim.scale.ray_engine import RayEngine, RayOptions

    src = collect(labelled / "class-03")
    store = GalleryStore.create(tmp_path / "s", disc_metric, compact="pca4-int8", root=src.root)
    with pytest.raises(ConfigError, match="fits its projection on the first images of a local build"):
        run_build(files_input(src), store, disc_metric, RayEngine(RayOptions(workers=1, shard_size=3)))
    assert len(store) == 0 and store.needs_projection
