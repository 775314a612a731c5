"""Ray Data datasets of gallery images as rows ``{"id", "path", "bytes"}`` (the bytes still encoded).

* a folder, a list file or image paths: listed by :func:`diffsim.gallery.sources.collect` (so the ids are
  the local engine's), read by ``ray.data.read_binary_files`` on the cluster;
* parquet files (``*.parquet``, or a folder of them with ``--input parquet``): an id column and an
  image-bytes column (a Hugging Face ``{"bytes", "path"}`` image struct works too);
* webdataset tar shards (``*.tar``): one image per sample, id ``KEY.EXT``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ImageError
from ..gallery.sources import IMAGE_EXTENSIONS, Sources, collect

INPUT_KINDS = ("auto", "files", "parquet", "webdataset")


@dataclass(frozen=True)
class RayInput:
    """What the Ray engine reads: a gallery of files, or parquet / webdataset shards."""

    kind: str  # files | parquet | webdataset
    paths: tuple[str, ...]
    root: str | None = None  # image ids are relative to it (files), as in the local engine
    id_column: str = "id"
    image_column: str = "image"
    total: int | None = None  # images, when known before reading

    def describe(self) -> str:
        return f"{self.kind}: {self.root or ', '.join(self.paths[:2])}{' ...' if len(self.paths) > 2 else ''}"


def _detect(given: Sequence[str]) -> str:
    suffixes = set()
    for g in given:
        p = Path(g)
        if p.is_dir():
            inner = {q.suffix.lower() for q in p.iterdir() if q.is_file()}
            suffixes |= {".parquet"} if inner == {".parquet"} else {".tar"} if inner == {".tar"} else {"files"}
        else:
            suffixes.add(p.suffix.lower())
    if suffixes == {".parquet"}:
        return "parquet"
    if suffixes == {".tar"}:
        return "webdataset"
    return "files"


def ray_input(
    gallery: str | os.PathLike | Sequence[str | os.PathLike],
    kind: str = "auto",
    sources: Sources | None = None,
    id_column: str = "id",
    image_column: str = "image",
) -> RayInput:
    """Describe ``gallery`` for :func:`read_dataset` (``kind="auto"``: parquet or tar shards by extension)."""
    given = [str(gallery)] if isinstance(gallery, (str, os.PathLike)) else [str(g) for g in gallery]
    if kind not in INPUT_KINDS:
        raise ConfigError(f"input kind must be one of {', '.join(INPUT_KINDS)}; got {kind!r}")
    if not given:
        raise ImageError("no gallery given: pass a folder, a list file, image paths, parquet files or tar shards")
    for g in given:
        if not Path(g).exists():
            raise ImageError(f"gallery not found: {g}")
    kind = _detect(given) if kind == "auto" else kind
    if kind == "files":
        src = sources if sources is not None else collect(given if len(given) > 1 else given[0])
        if not len(src):
            exts = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise ImageError(f"no images found in {' '.join(given)} (extensions: {exts})")
        return RayInput("files", tuple(src.paths), src.root, total=len(src))
    paths = tuple(str(Path(g).resolve()) for g in given)
    return RayInput(kind, paths, None, id_column, image_column)


def file_id(path: str, root: str | None) -> str:
    """The id :mod:`diffsim.gallery.sources` gives ``path``: relative to ``root`` (POSIX) when inside it."""
    if root is None:
        return str(Path(path))
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(Path(path))


def _files_rows(batch: dict[str, np.ndarray], root: str | None) -> dict[str, np.ndarray]:
    paths = [str(p) for p in batch["path"]]
    return {
        "id": np.array([file_id(p, root) for p in paths], dtype=object),
        "path": np.array(paths, dtype=object),
        "bytes": batch["bytes"],
    }


def _image_bytes(value: Any) -> bytes:
    if isinstance(value, dict):  # a Hugging Face datasets image struct
        value = value.get("bytes")
    if value is None:
        return b""
    return bytes(value)


def _table_rows(batch: dict[str, np.ndarray], id_column: str, image_column: str) -> dict[str, np.ndarray]:
    ids = [str(v) for v in batch[id_column]]
    return {
        "id": np.array(ids, dtype=object),
        "path": np.array(ids, dtype=object),
        "bytes": np.array([_image_bytes(v) for v in batch[image_column]], dtype=object),
    }


def _wds_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    exts = [c for c in batch if not c.startswith("__") and f".{c.lower()}" in IMAGE_EXTENSIONS]
    ids, data = [], []
    for i, key in enumerate(batch["__key__"]):
        ext = next((e for e in exts if batch[e][i] is not None and len(batch[e][i])), None)
        ids.append(f"{key}.{ext}" if ext else str(key))
        data.append(bytes(batch[ext][i]) if ext else b"")
    return {
        "id": np.array(ids, dtype=object),
        "path": np.array(ids, dtype=object),
        "bytes": np.array(data, dtype=object),
    }


def read_dataset(inp: RayInput) -> Any:
    """A Ray dataset of ``{"id", "path", "bytes"}`` rows (lazy: nothing is read until it runs)."""
    import ray.data

    if inp.kind == "files":
        ds = ray.data.read_binary_files(list(inp.paths), include_paths=True)
        # Ray types fn as one-argument, but passes fn_kwargs on: its stub is too narrow
        return ds.map_batches(_files_rows, fn_kwargs={"root": inp.root}, batch_format="numpy")  # type: ignore[arg-type]
    if inp.kind == "parquet":
        ds = ray.data.read_parquet(list(inp.paths))
        missing = [c for c in (inp.id_column, inp.image_column) if c not in ds.schema().names]
        if missing:
            names = ", ".join(ds.schema().names)
            raise ConfigError(
                f"{inp.describe()} has no column {missing[0]!r} (columns: {names}); "
                "name them with --id-column / --image-column"
            )
        ds = ds.select_columns([inp.id_column, inp.image_column])
        return ds.map_batches(
            _table_rows,  # type: ignore[arg-type]  # (fn_kwargs: as above)
            fn_kwargs={"id_column": inp.id_column, "image_column": inp.image_column},
            batch_format="numpy",
        )
    ds = ray.data.read_webdataset(list(inp.paths), decoder=None)
    return ds.map_batches(_wds_rows, batch_format="numpy")
