"""Join gallery stores built in parts (``--num-shards``/``RANK``) into one store.

Every part must hold the same metric settings, compact mode and gallery root, and no image id may be
in two parts. Merging into an existing store adds the parts' new images and replaces the ones whose
content changed (a rerun of the part builds after an append, then a merge again, updates the store).
Shard files are hard-linked (copied where links are not possible) under new names, so
their bytes, and checksums, are unchanged; the driver-side table API of
:class:`~diffsim.gallery.store.GalleryStore` records the rows.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..errors import StoreError
from ..gallery.compact import PROJECTION_FILE
from ..gallery.store import SETTINGS_FILE, GalleryStore, Row

logger = logging.getLogger(__name__)

#: settings.json entries that must agree between the parts
#: (``projection``: a pca store's fitted projection, by its SHA-256: parts fitted apart cannot be merged)
SAME = ("metric", "settings", "config", "features", "compact", "projection", "root")


def _check_same(first: GalleryStore, other: GalleryStore) -> None:
    diff = [k for k in SAME if first.settings.get(k) != other.settings.get(k)]
    if diff:
        raise StoreError(
            f"cannot merge {other.folder} with {first.folder}: built with other {', '.join(diff)}; "
            "build every part with the same metric options and gallery"
        )


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        raise StoreError(f"cannot merge: shard {dst} already exists")
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def merge_stores(parts: Sequence[str | os.PathLike], out: str | os.PathLike) -> GalleryStore:
    """Merge the stores ``parts`` into ``out`` (created, or an existing store with the same settings)."""
    if not parts:
        raise StoreError("no stores to merge: give the part folders")
    stores = [GalleryStore.open(p) for p in parts]
    if len({s.folder.resolve() for s in stores}) != len(stores):
        raise StoreError("the same part is given twice")
    first = stores[0]
    for s in stores[1:]:
        _check_same(first, s)
    owner: dict[str, Path] = {}
    for s in stores:
        for i in s.ids():
            if i in owner:
                raise StoreError(f"image id {i!r} is in both {owner[i]} and {s.folder}; parts must not overlap")
            owner[i] = s.folder
    out_path = Path(out)
    if (out_path / SETTINGS_FILE).exists():
        target = GalleryStore.open(out_path)
        _check_same(first, target)
    else:
        (out_path / "shards").mkdir(parents=True, exist_ok=True)
        if first.settings.get("projection"):
            shutil.copy2(first.folder / first.settings["projection"]["file"], out_path / PROJECTION_FILE)
        (out_path / SETTINGS_FILE).write_text(json.dumps(first.settings, indent=2, sort_keys=True))
        target = GalleryStore.open(out_path)
        target.set_errors([])
    known = target.hashes()  # an image already merged with the same content is kept as it is
    have = target.table()
    linked = dict(zip(have.column("shard").to_pylist(), have.column("checksum").to_pylist(), strict=False))
    errors = {e["path"]: e["reason"] for e in target.errors()}
    for n, s in enumerate(stores):
        table = s.table()
        if not table.num_rows:
            continue
        ids = s.ids()
        cols = {c: table.column(c).to_pylist() for c in ("path", "hash", "shard", "row", "checksum")}
        fresh = [j for j, i in enumerate(ids) if known.get(i) != cols["hash"][j]]
        renamed: dict[str, str] = {}
        for j in fresh:
            old = cols["shard"][j]
            if old in renamed:
                continue
            new = f"{s.folder.name.replace('.', '-')}-{n:03d}-{old}"
            new = "".join(c if c.isalnum() or c in "-_" else "-" for c in new)
            base, k = new, 1
            while target.shard_path(new).exists() and linked.get(new) != cols["checksum"][j]:
                new, k = f"{base}-{k}", k + 1  # a name taken by other bytes: the next free one
            if not target.shard_path(new).exists():
                _link_or_copy(s.shard_path(old), target.shard_path(new))
            renamed[old] = new
        target.add_rows(
            Row(
                ids[j],
                cols["path"][j],
                cols["hash"][j],
                renamed[cols["shard"][j]],
                int(cols["row"][j]),
                cols["checksum"][j],
            )
            for j in fresh
        )
        errors.update({e["path"]: e["reason"] for e in s.errors()})
        logger.info(
            "merged %s: %d new or changed images of %d, %d shard(s)", s.folder, len(fresh), table.num_rows, len(renamed)
        )
    target.commit()
    target.set_errors(errors.items())
    return target
