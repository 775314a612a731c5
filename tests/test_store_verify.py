"""Damaged shards (issue 29 item 7) and stores written before version 2 (issue 30): a build re-embeds what
a changed shard held, `index info` warns, `index verify` reads every byte; a version-1 store still opens."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from diffsim.gallery import GalleryStore

from .test_gallery import built, disc_metric, disc_model, labelled, run  # noqa: F401


def _copy(built: GalleryStore, tmp_path: Path) -> GalleryStore:  # noqa: F811
    shutil.copytree(built.folder, tmp_path / "s")  # copy2: the shards stay older than the table
    return GalleryStore.open(tmp_path / "s")


def _damage(store: GalleryStore, name: str) -> int:
    path = store.shard_path(name)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one byte of the features
    path.write_bytes(bytes(data))
    return sum(1 for r in store.rows() if r["shard"] == name)


def test_a_changed_shard_is_reported_and_re_embedded(capsys, tmp_path, built, labelled):  # noqa: F811
    store = _copy(built, tmp_path)
    name = sorted({r["shard"] for r in store.rows()})[1]
    n = _damage(store, name)
    code, _, err = run(capsys, "index", "info", store.folder)
    assert code == 0 and "1 shard file(s) changed or went missing" in err and name in err
    code, _, err = run(capsys, "index", "verify", store.folder)
    assert code == 2 and err.count("\n") == 1, err
    assert "1 of 4 shard(s)" in err and name in err and "checksum mismatch" in err and "--repair" in err
    code, text, err = run(capsys, "index", "build", labelled, "--out", store.folder, "-q", "--ann", "none")
    assert code == 0, err
    assert f"embedded {n} " in text and f"{n} re-embedded" in text and f"{16 - n} already stored" in text
    code, text, err = run(capsys, "index", "verify", store.folder)
    assert code == 0 and "every shard matches its checksum" in text, err


def test_verify_repair_drops_the_damaged_rows_for_the_next_build(capsys, tmp_path, built, labelled):  # noqa: F811
    store = _copy(built, tmp_path)
    name = sorted({r["shard"] for r in store.rows()})[0]
    n = _damage(store, name)
    code, text, err = run(capsys, "index", "verify", store.folder, "--repair")
    assert code == 0 and f"dropped {n} image(s) of 1 damaged shard(s)" in text, err
    assert len(GalleryStore.open(store.folder)) == 16 - n and not store.shard_path(name).exists()
    code, text, err = run(capsys, "index", "build", labelled, "--out", store.folder, "-q", "--ann", "none")
    assert code == 0 and f"embedded {n} " in text, err


def test_a_version_1_store_with_pooled_vectors_in_its_table_still_opens(capsys, tmp_path, built, labelled):  # noqa: F811
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = _copy(built, tmp_path)
    ids, vecs = store.pooled()
    table = store.table()
    dim = vecs.shape[1]
    old = table.append_column("pool", pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), dim))
    pq.write_table(old, store.folder / "index.parquet")  # the version-1 layout: the vectors in the table too
    settings = json.loads((store.folder / "settings.json").read_text())
    (store.folder / "settings.json").write_text(json.dumps({**settings, "version": 1}))
    again = GalleryStore.open(store.folder)
    got_ids, got = again.pooled()
    assert got_ids == ids and np.array_equal(got, vecs) and "pool" not in again.table().column_names
    q = labelled / "class-01" / "img-0001.png"
    code, text, err = run(capsys, "retrieve", q, "--index", store.folder, "-k", 1, "--json")
    assert code == 0 and json.loads(text.splitlines()[0])["path"] == "class-01/img-0001.png", err
