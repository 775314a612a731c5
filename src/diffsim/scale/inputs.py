"""Ray Data datasets of gallery images as rows ``{"id", "path", "bytes"}`` (the bytes still encoded).

The gallery is described by :func:`diffsim.gallery.readers.open_gallery` (the readers every engine
shares; :func:`ray_input` is its name here); Ray Data reads it on the cluster with the same ids:

* image files: the local listing (ids relative to the gallery root); each decode task reads its files;
* parquet files: ``ray.data.read_parquet``, the id and image-bytes columns;
* webdataset tar shards: ``ray.data.read_webdataset``, id ``KEY.EXT``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..gallery.readers import GalleryInput, check_columns, image_bytes, is_image_ext, open_gallery, sample_id

RayInput = GalleryInput  # one description of a gallery for every engine
ray_input = open_gallery
_image_bytes = image_bytes

__all__ = ["RayInput", "file_id", "ray_input", "read_dataset"]


def file_id(path: str, root: str | None) -> str:
    """The id :mod:`diffsim.gallery.sources` gives ``path``: relative to ``root`` (POSIX) when inside it."""
    if root is None:
        return str(Path(path))
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(Path(path))


def _table_rows(batch: dict[str, np.ndarray], id_column: str, image_column: str) -> dict[str, np.ndarray]:
    ids = [str(v) for v in batch[id_column]]
    return {
        "id": np.array(ids, dtype=object),
        "path": np.array(ids, dtype=object),
        "bytes": np.array([image_bytes(v) for v in batch[image_column]], dtype=object),
    }


def _wds_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    exts = [c for c in batch if not c.startswith("__") and is_image_ext(c)]
    ids, data = [], []
    for i, key in enumerate(batch["__key__"]):
        present = [e for e in exts if isinstance(batch[e][i], (bytes, bytearray)) and len(batch[e][i])]  # else NaN
        sid, ext = sample_id(str(key), present)
        ids.append(sid)
        data.append(bytes(batch[ext][i]) if ext else b"")
    return {
        "id": np.array(ids, dtype=object),
        "path": np.array(ids, dtype=object),
        "bytes": np.array(data, dtype=object),
    }


def read_dataset(inp: GalleryInput) -> Any:
    """A Ray dataset of ``{"id", "path", "bytes"}`` rows (lazy: nothing is read until it runs)."""
    import ray.data

    if inp.kind == "files":  # the listing travels; each decode task reads its files (a missing one is a failure)
        items = [{"id": r.id, "path": r.path} for r in inp.records()]
        return ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // 16, 200)) if items else None)
    if inp.kind == "parquet":
        ds = ray.data.read_parquet(list(inp.paths))
        check_columns(ds.schema().names, inp.id_column, inp.image_column, inp.describe())
        ds = ds.select_columns([inp.id_column, inp.image_column])
        return ds.map_batches(
            _table_rows,  # type: ignore[arg-type]  # (fn_kwargs: as above)
            fn_kwargs={"id_column": inp.id_column, "image_column": inp.image_column},
            batch_format="numpy",
        )
    ds = ray.data.read_webdataset(list(inp.paths), decoder=None)
    return ds.map_batches(_wds_rows, batch_format="numpy")
