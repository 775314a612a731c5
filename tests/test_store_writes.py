"""Store writes at scale (issue #30): staged rows hold no vectors, commits replace rows, shard numbers."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import torch

from diffsim.features import Features
from diffsim.gallery import GalleryStore

from .test_gallery import disc_metric, disc_model  # noqa: F401


def _vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 256)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _write(store: GalleryStore, ids: list[str], vecs: np.ndarray) -> str:
    feats = Features({"placeholder": torch.zeros(len(ids), 1, dtype=torch.uint8)}, {}, ids)
    record = store.write_shard(ids, ids, ["h"] * len(ids), feats, vecs)
    store.add_shard(record)
    return record.name


def test_staged_rows_keep_no_pooled_vector_alive(tmp_path, disc_metric):  # noqa: F811
    store = GalleryStore.create(tmp_path / "s", disc_metric)
    vecs = _vectors(64, 0)
    expected, alive = vecs.copy(), weakref.ref(vecs)
    _write(store, [f"{i:03d}" for i in range(64)], vecs)
    del vecs
    gc.collect()
    assert alive() is None  # the staged rows (and the shard record) hold no view of the vectors
    store.commit()
    assert np.array_equal(store.pool_rows(0, 64), expected)


def test_a_commit_replaces_rows_and_drops_an_unused_shard(tmp_path, disc_metric):  # noqa: F811
    store = GalleryStore.create(tmp_path / "s", disc_metric)
    first = _write(store, ["a", "b"], _vectors(2, 1))
    store.commit()
    second = _write(store, ["b", "c"], _vectors(2, 2))
    store.commit()
    rows = {r["id"]: r["shard"] for r in store.rows()}
    assert rows == {"a": first, "b": second, "c": second} and store.ids() == ["a", "b", "c"]
    third = _write(store, ["a"], _vectors(1, 3))
    store.commit()
    assert {r["id"]: r["shard"] for r in store.rows()} == {"b": second, "c": second, "a": third}
    assert not store.shard_path(first).exists() and store.shard_path(second).exists()
    again = GalleryStore.open(store.folder)
    assert again.ids() == ["b", "c", "a"] and np.array_equal(again.pool_rows(2, 3), store.pool_rows(2, 3))


def test_two_writers_of_one_folder_never_share_a_shard_number(tmp_path, disc_metric):  # noqa: F811
    one = GalleryStore.create(tmp_path / "s", disc_metric)
    two = GalleryStore.open(one.folder)
    names = [_write(s, [f"{k}"], _vectors(1, k)) for k, s in enumerate([one, two, one, two, one])]
    assert names == [f"shard-{i:05d}" for i in range(5)]
    assert len(list(one.shard_dir.glob("*.safetensors"))) == 5
    late = GalleryStore.open(one.folder)  # a new store object lists the folder once
    assert _write(late, ["x"], _vectors(1, 9)) == "shard-00005"
