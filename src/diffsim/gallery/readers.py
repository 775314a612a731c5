"""Readers: what a gallery holds, as ``Record(id, path, data)`` streams that every engine consumes.

* image files (a folder walked recursively, a list file, image paths): listed by
  :func:`~diffsim.gallery.sources.collect` (ids relative to the gallery root); ``data`` is None, the
  bytes are read where the record is decoded (a DataLoader worker, a Ray task);
* parquet files: an id column and an image-bytes column (a Hugging Face ``{"bytes", "path"}`` image
  struct works too);
* webdataset tar shards: one image per sample, id ``KEY.EXT`` (the first member with an image extension).

The ids are the same whichever engine reads (the Ray engine reads parquet and tar shards with Ray Data,
through :func:`table_rows` and :func:`sample_id` of this module).
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ImageError
from ..extensions import IMAGE_EXTENSIONS
from .sources import Sources, collect

INPUT_KINDS = ("auto", "files", "parquet", "webdataset")
_WDS_NAME = re.compile(r"^((?:.*/|)[^./]+)[.]([^/]*)$")  # webdataset's KEY.EXT split (first dot of the name)


@dataclass(frozen=True)
class Record:
    """One gallery image: its stable ``id``, the path (or name) recorded and shown in messages, and its
    encoded bytes (None: read the file at ``path``)."""

    id: str
    path: str
    data: bytes | None = None


@dataclass(frozen=True)
class GalleryInput:
    """A gallery to read: image files, or parquet / webdataset shards."""

    kind: str  # files | parquet | webdataset
    paths: tuple[str, ...]
    root: str | None = None  # image ids are relative to it (files)
    id_column: str = "id"
    image_column: str = "image"
    total: int | None = None  # images, when known before reading
    sources: Sources | None = None  # files: the listing

    def describe(self) -> str:
        return f"{self.kind}: {self.root or ', '.join(self.paths[:2])}{' ...' if len(self.paths) > 2 else ''}"

    @property
    def complete(self) -> bool:
        """True when the input is a whole gallery (folder, list file, shards), not loose image paths:
        a rebuild then drops the stored rows of images no longer in it."""
        return self.kind != "files" or self.root is not None

    def records(self) -> Iterator[Record]:
        """Every image, in a fixed order (bytes of files are not read here)."""
        if self.kind == "files":
            assert self.sources is not None
            for s in self.sources:
                yield Record(s.id, s.path)
        elif self.kind == "parquet":
            for p in self.paths:
                yield from _parquet_records(p, self.id_column, self.image_column)
        else:
            for p in self.paths:
                yield from _tar_records(p)


def files_input(sources: Sources) -> GalleryInput:
    """The reader of an image-file gallery already listed."""
    return GalleryInput("files", tuple(sources.paths), sources.root, total=len(sources), sources=sources)


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


def _expand(given: Sequence[str], suffix: str) -> tuple[str, ...]:
    """Files given, with folders replaced by their ``*suffix`` files (sorted)."""
    out: list[str] = []
    for g in given:
        p = Path(g).resolve()
        out += sorted(str(q) for q in p.glob(f"*{suffix}")) if p.is_dir() else [str(p)]
    return tuple(out)


def open_gallery(
    gallery: str | os.PathLike | Sequence[str | os.PathLike],
    kind: str = "auto",
    sources: Sources | None = None,
    id_column: str = "id",
    image_column: str = "image",
) -> GalleryInput:
    """Describe ``gallery`` (``kind="auto"``: parquet or tar shards by extension, else image files)."""
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
        return files_input(src)
    suffix = ".parquet" if kind == "parquet" else ".tar"
    paths = _expand(given, suffix)
    if not paths:
        raise ImageError(f"no {suffix} files in {' '.join(given)} (--input {kind})")
    total = None
    if kind == "parquet":
        total = sum(_parquet_rows(p, id_column, image_column) for p in paths)
    return GalleryInput(kind, paths, None, id_column, image_column, total=total)


# ----------------------------------------------------------------------------------- parquet
def image_bytes(value: Any) -> bytes:
    """The encoded bytes of a parquet image cell (raw bytes, or a Hugging Face ``{"bytes", "path"}`` struct)."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if value is None:
        return b""
    return bytes(value)


def check_columns(names: Sequence[str], id_column: str, image_column: str, what: str) -> None:
    missing = [c for c in (id_column, image_column) if c not in names]
    if missing:
        raise ConfigError(
            f"{what} has no column {missing[0]!r} (columns: {', '.join(names)}); "
            "name them with --id-column / --image-column"
        )


def _parquet_rows(path: str, id_column: str, image_column: str) -> int:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path)
    check_columns(meta.schema_arrow.names, id_column, image_column, f"parquet: {path}")
    return int(meta.metadata.num_rows)


def _parquet_records(path: str, id_column: str, image_column: str) -> Iterator[Record]:
    import pyarrow.parquet as pq

    fh = pq.ParquetFile(path)
    check_columns(fh.schema_arrow.names, id_column, image_column, f"parquet: {path}")
    for batch in fh.iter_batches(batch_size=64, columns=[id_column, image_column]):
        ids = batch.column(id_column).to_pylist()
        for i, v in zip(ids, batch.column(image_column).to_pylist(), strict=True):
            yield Record(str(i), str(i), image_bytes(v))


# ----------------------------------------------------------------------------------- webdataset
def is_image_ext(ext: str) -> bool:
    return f".{ext.lower()}" in IMAGE_EXTENSIONS


def sample_id(key: str, exts: Sequence[str]) -> tuple[str, str | None]:
    """(id, image extension) of a webdataset sample with members ``exts``: ``KEY.EXT`` of its first image."""
    ext = next((e for e in exts if is_image_ext(e)), None)
    return (f"{key}.{ext}" if ext else key), ext


def _tar_records(path: str) -> Iterator[Record]:
    """One record per sample (consecutive members sharing a key); a sample without an image gets no bytes."""
    key: str | None = None
    members: dict[str, bytes] = {}

    def flush() -> Iterator[Record]:
        if key is not None:
            sid, ext = sample_id(key, list(members))
            yield Record(sid, sid, members[ext] if ext else b"")

    with tarfile.open(path, "r|*") as tar:
        for info in tar:
            m = _WDS_NAME.match(info.name)
            if not info.isfile() or m is None or os.path.basename(info.name).startswith("."):
                continue
            k, ext = m.group(1), m.group(2)
            if k != key:
                yield from flush()
                key, members = k, {}
            fh = tar.extractfile(info) if is_image_ext(ext) else None
            members[ext] = fh.read() if fh is not None else b""
        yield from flush()
