"""An on-disk feature store for a gallery: sharded safetensors features plus a parquet table.

Format (version 1), a folder::

    STORE/
      settings.json          {"format": "diffsim-gallery", "version": 1, "metric": NAME,
                              "settings": metric settings (runtime ones left out), "config": metric.config,
                              "features": metric.feature_config(), "compact": "none" | "fp16" | "int8" |
                              "pcaR-int8" | "pcaR-poolP-int8", "projection": {"file", "sha256", "sample", "dims"}
                              (pca modes, once fitted), "root": ...}
      projection.safetensors the fitted channel projection of a pca mode (:mod:`diffsim.gallery.compact`)
      index.parquet          one row per image: id, path, hash, shard, row, checksum
      errors.json            [{"path": ..., "reason": ...}] images that could not be read
      shards/shard-00000.safetensors
      shards/shard-00001.safetensors ...
      ann/index.faiss, ann/ann.json   the persisted ANN index of the pooled vectors (:mod:`diffsim.gallery.ann`)

* ``id``: the image's stable id (path relative to the gallery root, or absolute); ``path``: the file as
  read; ``hash``: BLAKE2b-128 of the file's bytes; ``shard`` / ``row``: where its features are;
  ``checksum``: SHA-256 of the whole shard file. The image's pooled vector (``metric.pool`` of its
  features, float32, L2-normalised, for approximate search) is in its shard only (``__pool__``), so the
  table's memory does not grow with the vector size; version-1 stores also kept it in the table: that
  column is ignored (and dropped at the next commit).
* A shard holds the features of up to N images: each feature tensor of ``Features`` stacked along the
  first dimension (float16 with ``compact="fp16"``; with ``compact="int8"`` int8 codes plus ``KEY#scale``,
  one float16 scale per image, head and channel; with a ``pca`` mode the int8 codes are the projected
  components, decoded back to the original shape on reading), plus ``__pool__`` (N, D) float32. Its metadata
  repeats the ids, paths and hashes, so a shard is self-describing: a shard written but not yet in
  the table (a build killed between the two) is recovered by :meth:`GalleryStore.recover`.
* Shards are written to a temporary file and then hard-linked (or renamed) into place, so a shard is
  either absent or complete; the table is rewritten through a temporary file and ``os.replace``.
  Any process may write shards (e.g. one per Ray actor): a new shard takes the next free number, and
  the link fails rather than overwrite. Only one process (the driver) writes the table:
  :meth:`add_rows` / :meth:`add_shard` then :meth:`commit`.
* Opening a store with a metric whose name, config or feature config differs is a
  :class:`~diffsim.errors.StoreError` naming the settings that differ. A shard whose bytes do not
  match its checksum, or that safetensors cannot parse, is a :class:`~diffsim.errors.StoreError`
  naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, StoreError
from ..features import Features
from ..settings import jsonable
from .compact import BASIC_MODES, PROJECTION_FILE, SCALE_SUFFIX, Projection, parse_mode, quantise_int8
from .shardfile import ShardFile

logger = logging.getLogger(__name__)

FORMAT = "diffsim-gallery"
VERSION = 2
#: versions this code opens (1: the table also held the pooled vectors)
READABLE_VERSIONS = (1, 2)
SETTINGS_FILE = "settings.json"
INDEX_FILE = "index.parquet"
ERRORS_FILE = "errors.json"
SHARD_DIR = "shards"
POOL_KEY = "__pool__"
#: the modes without a projection; ``pcaR-int8`` / ``pcaR-poolP-int8`` are parsed by :func:`.compact.parse_mode`
COMPACT_MODES = BASIC_MODES
_SHARD_RE = re.compile(r"^shard-(\d+)$")


def file_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 hex digest of a file's bytes (what detects a changed gallery image)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class Row:
    """One image in the table."""

    id: str
    path: str
    hash: str
    shard: str
    row: int
    checksum: str


@dataclass
class ShardRecord:
    """What :meth:`GalleryStore.write_shard` returns: small enough to send back to a driver process."""

    name: str
    checksum: str
    rows: list[Row] = field(default_factory=list)


def local_model(features: dict[str, Any]) -> str | None:
    """The absolute model path a store's feature config records for a local model (``local:PATH#...``)."""
    ident = features.get("model")
    if isinstance(ident, str) and ident.startswith("local:"):
        return ident[len("local:") :].split("#", 1)[0]
    return None


def _absolute_model(doc: dict[str, Any], features: dict[str, Any]) -> None:
    """Replace a local ``model`` path as typed (maybe relative) by the absolute one, in place."""
    path = local_model(features)
    if path is not None and isinstance(doc.get("model"), str):
        doc["model"] = path


def _store_settings(metric: Any, compact: str) -> dict[str, Any]:
    runtime: frozenset[str] = getattr(metric.settings, "runtime", frozenset())
    features = jsonable(metric.feature_config())
    settings = {k: v for k, v in metric.settings.to_dict().items() if k not in runtime}
    config = jsonable(metric.config)
    for doc in (settings, config):  # a store must work from any folder: no relative model path
        _absolute_model(doc, features)
    return {
        "format": FORMAT,
        "version": VERSION,
        "metric": metric.name,
        "settings": settings,
        "config": config,
        "features": features,
        "compact": compact,
    }


def share_mode(path: str | os.PathLike) -> None:
    """Give a file made by :func:`tempfile.mkstemp` (mode 0600) the mode a plain ``open`` would (0666 & ~umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted names of the values that differ between two JSON-like mappings."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        share_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class PendingShard:
    """A shard being written image by image: spill files on disk, the small per-image fields in memory."""

    def __init__(self, store: GalleryStore) -> None:
        self.store = store
        self.file = ShardFile(store.shard_dir)
        self.ids: list[str] = []
        self.paths: list[str] = []
        self.hashes: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(
        self,
        ids: Sequence[str],
        paths: Sequence[str],
        hashes: Sequence[str],
        feats: Features,
        pooled: torch.Tensor | np.ndarray,
    ) -> None:
        """Append images (``feats``: their features; ``pooled``: their (N, D) vectors)."""
        vecs = np.asarray(torch.as_tensor(pooled).detach().cpu().float().numpy(), dtype=np.float32)
        if vecs.ndim != 2 or len(vecs) != len(ids):
            raise StoreError(f"refusing to store pooled vectors of shape {vecs.shape} for {len(ids)} images")
        bad = np.flatnonzero(~np.isfinite(vecs).all(axis=1))
        if len(bad):
            raise StoreError(
                f"refusing to store a non-finite pooled vector (image {ids[bad[0]]!r}, {len(bad)} of {len(ids)}); "
                "the metric's pool() must give finite (N, D) vectors"
            )
        self.file.add({**self.store.encode(feats), POOL_KEY: torch.from_numpy(vecs)})
        self.ids += list(ids)
        self.paths += list(paths)
        self.hashes += list(hashes)

    def discard(self) -> None:
        self.file.discard()


class GalleryStore:
    """A feature store folder (see the module docstring for the format)."""

    def __init__(self, folder: Path, settings: dict[str, Any]) -> None:
        self.folder = folder
        self.settings = settings
        self.compact: str = settings.get("compact", "none")
        self._projection: Projection | None = None
        self._table: Any = None  # pyarrow.Table of the committed rows, read lazily
        self._pending: dict[str, Row] = {}  # id -> row added since the last commit
        self._known_shards: set[str] = set()
        self._verified: dict[str, tuple[int, int] | None] = {}  # shard -> (size, mtime) when its checksum matched
        self._sums: tuple[Any, dict[str, str]] | None = None  # (table, {shard: checksum}) cache
        self._where: tuple[Any, dict[str, tuple[str, int]]] | None = None  # (table, locate()) cache
        self._next_shard: int | None = None  # next free shard number (see _next_index)

    # ----------------------------------------------------------------- create / open
    @classmethod
    def create(
        cls, folder: str | os.PathLike, metric: Any, compact: str = "none", root: str | None = None
    ) -> GalleryStore:
        """A new, empty store for ``metric`` (``folder`` must not hold a store already)."""
        parse_mode(compact)
        if not all(hasattr(metric, a) for a in ("embed_pixels", "preprocessor", "pool", "feature_config")):
            raise ConfigError(
                f"metric {metric.name!r} has no per-image features to store (e.g. a voting ensemble); "
                "index each member metric in its own store"
            )
        path = Path(folder)
        if (path / SETTINGS_FILE).exists():
            raise StoreError(f"{path} already holds a gallery store; open it instead")
        if path.exists() and not path.is_dir():
            raise StoreError(f"store path {path} exists and is not a folder")
        (path / SHARD_DIR).mkdir(parents=True, exist_ok=True)
        settings = _store_settings(metric, compact)
        settings["root"] = root
        _atomic_write(path / SETTINGS_FILE, json.dumps(settings, indent=2, sort_keys=True).encode())
        store = cls(path, settings)
        store._write_errors([])
        return store

    @classmethod
    def open(cls, folder: str | os.PathLike, metric: Any = None, compact: str | None = None) -> GalleryStore:
        """An existing store; with ``metric`` (and ``compact``), refuse one built with other settings."""
        path = Path(folder)
        sfile = path / SETTINGS_FILE
        if not sfile.is_file():
            raise StoreError(
                f"no gallery store at {path} (missing {SETTINGS_FILE}); build one with "
                "`diffsim index build GALLERY --out STORE`"
            )
        try:
            settings = json.loads(sfile.read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {sfile}: {exc}") from exc
        if settings.get("format") != FORMAT or settings.get("version") not in READABLE_VERSIONS:
            raise StoreError(
                f"{sfile} is not a {FORMAT} store of a version this diffsim reads {READABLE_VERSIONS} "
                f"(format {settings.get('format')!r}, version {settings.get('version')!r})"
            )
        try:
            parse_mode(settings.get("compact", "none"))
        except ConfigError as exc:
            raise StoreError(f"{sfile}: {exc} (a store written by a newer diffsim?)") from None
        store = cls(path, settings)
        if metric is not None:
            store.check_metric(metric)
        if compact is not None and compact != store.compact:
            raise StoreError(
                f"store {path} was built with compact={store.compact!r}, not {compact!r}; "
                "build a new store (another --out) for another compact mode"
            )
        return store

    @classmethod
    def open_or_create(
        cls, folder: str | os.PathLike, metric: Any, compact: str | None = None, root: str | None = None
    ) -> GalleryStore:
        """Open the store at ``folder`` (``compact`` None: the store's own mode) or create it for ``metric``
        (``compact`` None: "none"). An opened store's metric is checked by the build
        (:func:`~diffsim.gallery.runner.run_build`), once."""
        if (Path(folder) / SETTINGS_FILE).exists():
            return cls.open(folder, None, compact)
        return cls.create(folder, metric, compact or "none", root)

    def check_metric(self, metric: Any) -> None:
        """Raise :class:`StoreError` naming what differs if ``metric`` is not the store's metric."""
        mine = json.loads(json.dumps({k: self.settings.get(k) for k in ("metric", "config", "features")}))
        if isinstance(mine.get("config"), dict):  # stores written before models were recorded absolute
            _absolute_model(mine["config"], mine.get("features") or {})
        theirs = {k: v for k, v in _store_settings(metric, self.compact).items() if k in mine}
        if mine.get("metric") != theirs.get("metric"):  # another metric: say that, not its every setting
            raise StoreError(
                f"store {self.folder} holds {mine.get('metric')} features, not {theirs.get('metric')}: "
                f"use --metric {mine.get('metric')} with it, or build another store for {theirs.get('metric')}"
            )
        diff = _diff(mine, json.loads(json.dumps(theirs)))
        if diff:
            shown = ", ".join(
                f"{d} (store: {self._lookup(mine, d)!r}, given: {self._lookup(theirs, d)!r})" for d in diff[:4]
            )
            more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
            raise StoreError(
                f"store {self.folder} was built with other metric settings: {shown}{more}; "
                "use the same settings or build another store"
            )

    @staticmethod
    def _lookup(d: Any, dotted: str) -> Any:
        for part in dotted.split("."):
            d = d.get(part) if isinstance(d, dict) else None
        return d

    # ----------------------------------------------------------------- properties
    @property
    def metric_name(self) -> str:
        return self.settings["metric"]

    @property
    def metric_settings(self) -> dict[str, Any]:
        """Settings to rebuild the metric with ``create_metric(store.metric_name, **store.metric_settings)``.

        A local model is given by the absolute path recorded at build time, whatever the current folder.
        """
        out = dict(self.settings.get("settings", {}))
        _absolute_model(out, self.settings.get("features") or {})
        return out

    @property
    def feature_config(self) -> dict[str, Any]:
        return dict(self.settings["features"])

    @property
    def higher_is_better(self) -> bool:
        return bool(self.settings["config"].get("higher_is_better", True))

    @property
    def root(self) -> str | None:
        return self.settings.get("root")

    @property
    def shard_dir(self) -> Path:
        return self.folder / SHARD_DIR

    def shard_path(self, name: str) -> Path:
        return self.shard_dir / f"{name}.safetensors"

    # ----------------------------------------------------------------- compact projection
    @property
    def needs_projection(self) -> bool:
        """True for a ``pca...`` store whose projection is not fitted yet (no shard can be written)."""
        return parse_mode(self.compact).projected and not self.settings.get("projection")

    def projection(self) -> Projection | None:
        """The store's fitted projection (``pca...`` modes; loaded once and checked against its SHA-256)."""
        rec = self.settings.get("projection")
        if not rec:
            return None
        if self._projection is None:
            path = self.folder / rec["file"]
            got = hashlib.sha256(self._read_projection_bytes(path)).hexdigest()
            if got != rec["sha256"]:
                raise StoreError(f"corrupt projection {path}: checksum mismatch; build the store again")
            self._projection = Projection.load(path)
        return self._projection

    @staticmethod
    def _read_projection_bytes(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read the store's projection {path}: {exc.strerror or exc}") from None

    def set_projection(self, projection: Projection) -> None:
        """Save a fitted projection in the store and record it (mode, SHA-256, sample) in its settings."""
        if not parse_mode(self.compact).projected or projection.mode.name != self.compact:
            raise ConfigError(f"a {projection.mode.name} projection does not fit a compact={self.compact!r} store")
        if self.settings.get("projection"):
            raise StoreError(f"store {self.folder} already has a fitted projection")
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix="." + PROJECTION_FILE + ".", suffix=".tmp")
        os.close(fd)
        try:
            projection.save(tmp)
            share_mode(tmp)
            digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
            os.replace(tmp, self.folder / PROJECTION_FILE)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.settings["projection"] = {
            "file": PROJECTION_FILE,
            "sha256": digest,
            "sample": projection.sample,
            "dims": projection.dims,
        }
        _atomic_write(self.folder / SETTINGS_FILE, json.dumps(self.settings, indent=2, sort_keys=True).encode())
        self._projection = projection

    # ----------------------------------------------------------------- writing shards
    def _next_index(self) -> int:
        """The next free shard number: the folder is listed once per store object, then counted on (a
        number another process took meanwhile is skipped by :meth:`_place`)."""
        if self._next_shard is None:
            nums = [
                int(m.group(1))
                for p in self.shard_dir.glob("shard-*.safetensors")
                if (m := _SHARD_RE.match(p.name[: -len(".safetensors")]))
            ]
            self._next_shard = max(nums) + 1 if nums else 0
        return self._next_shard

    def begin_shard(self) -> PendingShard:
        """A shard to fill one image at a time (:meth:`PendingShard.add`), then :meth:`finish_shard`."""
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        return PendingShard(self)

    def write_shard(
        self,
        ids: Sequence[str],
        paths: Sequence[str],
        hashes: Sequence[str],
        feats: Features,
        pooled: torch.Tensor | np.ndarray,
        name: str | None = None,
    ) -> ShardRecord:
        """Write one shard atomically (any process may call this); returns its name, checksum and rows.

        ``name``: a fixed name (letters, digits, ``-``, ``_``), e.g. one derived from a Ray task; by
        default the next free ``shard-NNNNN``. The rows still have to reach the table:
        :meth:`add_shard` (or :meth:`add_rows`) then :meth:`commit`, in the driver.
        """
        n = len(ids)
        if not (n == len(paths) == len(hashes) == len(feats) == len(pooled)) or n == 0:
            raise ValueError(
                f"write_shard needs equal, non-zero counts; got ids {n}, paths {len(paths)}, "
                f"hashes {len(hashes)}, features {len(feats)}, pooled {len(pooled)}"
            )
        shard = self.begin_shard()
        try:
            shard.add(ids, paths, hashes, feats, pooled)
        except BaseException:
            shard.discard()
            raise
        return self.finish_shard(shard, name)

    def finish_shard(self, shard: PendingShard, name: str | None = None) -> ShardRecord:
        """Write a filled :class:`PendingShard` into place (see :meth:`write_shard` for ``name``)."""
        meta = {
            "format": FORMAT,
            "ids": json.dumps(shard.ids),
            "paths": json.dumps(shard.paths),
            "hashes": json.dumps(shard.hashes),
        }
        tmp, checksum, nbytes = shard.file.finish(meta)
        try:
            share_mode(tmp)
            name = self._place(tmp, name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        rows = [
            Row(i, p, h, name, r, checksum)
            for r, (i, p, h) in enumerate(zip(shard.ids, shard.paths, shard.hashes, strict=True))
        ]
        logger.debug("wrote %s (%d images, %d bytes)", name, len(rows), nbytes)
        return ShardRecord(name, checksum, rows)

    def encode(self, feats: Features) -> dict[str, torch.Tensor]:
        """The stored tensors of ``feats`` in the store's compact mode (:func:`encode_tensors`)."""
        projection = self.projection()
        if projection is None and parse_mode(self.compact).projected:
            raise StoreError(
                f"store {self.folder} (compact={self.compact}) has no fitted projection yet: a build fits it "
                "on its first images"
            )
        return encode_tensors(feats, self.compact, projection)

    def _place(self, tmp: str, name: str | None) -> str:
        """Move the finished temp file to its final name without ever overwriting a shard."""
        if name is not None:
            if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
                raise ConfigError(f"shard name must be letters, digits, '-' or '_'; got {name!r}")
            self._link(tmp, self.shard_path(name))
            return name
        index = self._next_index()
        while True:
            candidate = f"shard-{index:05d}"
            try:
                self._link(tmp, self.shard_path(candidate))
                self._next_shard = index + 1
                return candidate
            except FileExistsError:
                index += 1

    @staticmethod
    def _link(tmp: str, final: Path) -> None:
        try:
            os.link(tmp, final)  # atomic, and fails if ``final`` exists
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links
            if final.exists():
                raise FileExistsError(str(final)) from None
            os.replace(tmp, final)

    # ----------------------------------------------------------------- the table
    def _read_table(self) -> Any:
        if self._table is None:
            import pyarrow.parquet as pq

            ipath = self.folder / INDEX_FILE
            if ipath.exists():
                try:
                    names = pq.read_schema(ipath).names
                    # tables written before version 2 held the pooled vectors too: they are in the shards
                    self._table = pq.read_table(ipath, columns=[c for c in names if c != "pool"])
                except Exception as exc:  # noqa: BLE001 - any parquet error: name the file
                    raise StoreError(
                        f"cannot read the store table {ipath} ({exc}); the features are safe in "
                        f"{self.shard_dir}: delete {ipath.name} and run `diffsim index build` on the same "
                        "gallery and --out to recover the table from the shards without embedding again"
                    ) from exc
            else:
                self._table = _rows_to_table([])
            import pyarrow.compute as pc

            self._known_shards = set(pc.unique(self._table.column("shard")).to_pylist())
        return self._table

    def add_rows(self, rows: Iterable[Row]) -> None:
        """Stage rows for the next :meth:`commit` (a row replaces any earlier one with the same id)."""
        self._read_table()
        for r in rows:
            self._pending.pop(r.id, None)
            self._pending[r.id] = r
            self._known_shards.add(r.shard)

    def add_shard(self, record: ShardRecord) -> None:
        """Stage the rows of a written shard."""
        self.add_rows(record.rows)

    def commit(self) -> None:
        """Write the table (committed rows, replaced by the staged ones) atomically; drop shards no row uses."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = self._read_table()
        if self._pending:
            new = _rows_to_table(list(self._pending.values()))
            if table.num_rows:  # vectorised: a commit costs a table write, not a Python pass over every row
                replaced = pc.is_in(table.column("id"), value_set=new.column("id"))
                table = pa.concat_tables([table.filter(pc.invert(replaced)), new])
            else:
                table = new
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        _atomic_write(self.folder / INDEX_FILE, sink.getvalue().to_pybytes())
        self._table, self._pending = table, {}
        used = set(pc.unique(table.column("shard")).to_pylist())
        for name in sorted(self._known_shards - used):  # every row re-embedded elsewhere
            self.shard_path(name).unlink(missing_ok=True)
            logger.info("removed %s: all its images were re-embedded", name)
        self._known_shards = used

    def remove(self, ids: Iterable[str]) -> int:
        """Drop the rows of ``ids`` (images no longer in the gallery) and commit; returns how many were dropped.

        Shards left without any row are deleted by the commit."""
        import pyarrow as pa

        gone = set(ids)
        table = self._read_table()
        keep = np.array([i not in gone for i in table.column("id").to_pylist()], dtype=bool)
        dropped = int((~keep).sum()) + sum(1 for i in list(self._pending) if i in gone)
        for i in gone:
            self._pending.pop(i, None)
        self._table = table.filter(pa.array(keep))
        self.commit()
        return dropped

    def recover(self) -> int:
        """Bring shards that were written but never committed into the table; drop rows whose shard is gone.

        Returns the number of recovered images. Corrupt uncommitted shards are skipped with a warning
        (their images are embedded again).
        """
        table = self._read_table()
        self._clean_temp_files()
        on_disk = {p.name[: -len(".safetensors")] for p in self.shard_dir.glob("*.safetensors")}
        missing = self._known_shards - on_disk - {r.shard for r in self._pending.values()}
        recovered = 0
        if missing:
            import pyarrow as pa

            logger.warning("shard file(s) missing: %s; their images will be embedded again", ", ".join(sorted(missing)))
            keep = np.array([s not in missing for s in table.column("shard").to_pylist()], dtype=bool)
            self._table = table.filter(pa.array(keep))
            self._known_shards -= missing
        for name in sorted(on_disk - self._known_shards):
            try:
                record = self.read_record(name)
            except StoreError as exc:
                logger.warning("skipping an uncommitted shard: %s", exc)
                continue
            self.add_shard(record)
            recovered += len(record.rows)
        if recovered or missing:
            self.commit()
            if recovered:
                logger.info("recovered %d image(s) from uncommitted shards", recovered)
        return recovered

    def _clean_temp_files(self) -> None:
        """Remove temp files left by dead writer processes of this host."""
        host = socket.gethostname()
        for p in self.shard_dir.glob(".*.tmp"):
            parts = p.name.split(".")
            if len(parts) < 4 or parts[1] != host or not parts[2].isdigit():
                continue
            try:
                os.kill(int(parts[2]), 0)
            except ProcessLookupError:
                p.unlink(missing_ok=True)
            except PermissionError:
                pass

    def read_record(self, name: str) -> ShardRecord:
        """The rows a shard file describes (its metadata), with its checksum."""
        path = self.shard_path(name)
        data = self._read_bytes(path)
        from safetensors.torch import load

        try:
            tensors = load(data)
            meta = _metadata(data)
            ids, paths, hashes = (json.loads(meta[k]) for k in ("ids", "paths", "hashes"))
            if len(tensors[POOL_KEY]) != len(ids):
                raise ValueError(f"{len(tensors[POOL_KEY])} pooled vectors for {len(ids)} ids")
        except Exception as exc:  # noqa: BLE001 - any parse error: name the file
            raise StoreError(f"corrupt shard {path}: {exc}") from exc
        checksum = hashlib.sha256(data).hexdigest()
        rows = [Row(i, p, h, name, r, checksum) for r, (i, p, h) in enumerate(zip(ids, paths, hashes, strict=False))]
        return ShardRecord(name, checksum, rows)

    @staticmethod
    def _read_bytes(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StoreError(
                f"shard file missing: {path}; run `diffsim index build` again to re-embed its images"
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot read shard {path}: {exc}") from exc

    # ----------------------------------------------------------------- reading
    def table(self) -> Any:
        """The committed table (pyarrow), staged rows not included."""
        return self._read_table()

    def __len__(self) -> int:
        return self._read_table().num_rows

    def ids(self) -> list[str]:
        return self._read_table().column("id").to_pylist()

    def hashes(self) -> dict[str, str]:
        """{id: content hash} of the committed and staged rows."""
        t = self._read_table()
        out = dict(zip(t.column("id").to_pylist(), t.column("hash").to_pylist(), strict=False))
        out.update({r.id: r.hash for r in self._pending.values()})
        return out

    def has(self, id: str, hash: str) -> bool:
        """True if image ``id`` is stored with this content hash."""
        if id in self._pending:
            return self._pending[id].hash == hash
        return self.hashes().get(id) == hash

    def rows(self) -> list[dict[str, Any]]:
        """The committed rows as dicts (without the pooled vectors)."""
        return self._read_table().to_pylist()

    def pooled(self) -> tuple[list[str], np.ndarray]:
        """(ids, (N, D) float32) of the committed rows, in table order (small stores: see :meth:`pool_rows`)."""
        n = len(self)
        return self.ids(), self.pool_rows(0, n) if n else np.zeros((0, 0), dtype=np.float32)

    def pool_rows(self, start: int, stop: int) -> np.ndarray:
        """Pooled vectors (float32, C order) of table rows ``start:stop``, read from the shards."""
        return self.pool_take(np.arange(start, stop))

    def pool_take(self, positions: np.ndarray | Sequence[int]) -> np.ndarray:
        """Pooled vectors of the given table rows (in that order), each shard's rows read memory-mapped."""
        from safetensors import safe_open

        t = self._read_table()
        pos = np.asarray(positions, dtype=np.int64)
        if len(pos) == 0:
            return np.zeros((0, self.pool_dim()), dtype=np.float32)
        shards = t.column("shard").take(pos).to_pylist()
        rows = t.column("row").take(pos).to_numpy()
        groups: dict[str, list[int]] = {}
        for j, sh in enumerate(shards):
            groups.setdefault(sh, []).append(j)
        out: np.ndarray | None = None
        for sh, js in groups.items():
            path = self.shard_path(sh)
            self._verify(sh, path)
            try:
                with safe_open(str(path), framework="pt") as fh:
                    got = _read_rows(fh.get_slice(POOL_KEY), [int(rows[j]) for j in js]).float().numpy()
            except Exception as exc:  # noqa: BLE001 - any parse error: name the file
                raise StoreError(f"corrupt shard {path}: {exc}") from exc
            if out is None:
                out = np.empty((len(pos), got.shape[1]), dtype=np.float32)
            out[js] = got
        assert out is not None
        return out

    def pool_dim(self) -> int:
        """Dimensions of the pooled vectors (0 for an empty store)."""
        return int(self.pool_rows(0, 1).shape[1]) if len(self) else 0

    def load_shard(self, name: str, rows: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """The feature tensors of one shard, or of its ``rows`` only (float32 when stored compact).

        The shard is memory-mapped and only the wanted rows are read (``safe_open(...).get_slice``), so
        memory holds the rows asked for, not the shard. The first read of a shard by this store object
        checks its checksum against the table, streaming the file (later reads of the unchanged file, same
        size and mtime, skip the check).
        """
        from safetensors import safe_open

        path = self.shard_path(name)
        self._verify(name, path)
        try:
            with safe_open(str(path), framework="pt") as fh:
                keys = [k for k in fh.keys() if k != POOL_KEY]  # noqa: SIM118 (safe_open is not iterable)
                if rows is None:
                    tensors = {k: fh.get_tensor(k) for k in keys}
                else:
                    tensors = {k: _read_rows(fh.get_slice(k), list(rows)) for k in keys}
            return decode_tensors(tensors, self.compact, self.projection())
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - any parse error: name the file
            raise StoreError(f"corrupt shard {path}: {exc}") from exc

    def _verify(self, name: str, path: Path) -> None:
        """Check a committed shard's SHA-256 (streamed, nothing kept in memory) once per store object."""
        stamp = self._stamp(path)
        if stamp is None:
            self._read_bytes(path)  # the clear "shard file missing" error
        if self._verified.get(name) == stamp:
            return
        expected = self._checksums().get(name)
        if expected is None:
            return
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                while block := fh.read(1 << 22):
                    h.update(block)
        except OSError as exc:
            raise StoreError(f"cannot read shard {path}: {exc}") from exc
        got = h.hexdigest()
        if got != expected:
            raise StoreError(
                f"corrupt shard {path}: checksum mismatch (table {expected[:12]}..., file "
                f"{got[:12]}...); delete it and run `diffsim index build` again to re-embed "
                "its images"
            )
        self._verified[name] = stamp

    def changed_shards(self) -> list[str]:
        """Committed shards whose file is missing or was modified after the table was last written (the
        cheap check a build makes; :meth:`verify` reads every byte)."""
        try:
            table_time = (self.folder / INDEX_FILE).stat().st_mtime_ns
        except OSError:
            return []
        out = []
        for name in self._checksums():
            stamp = self._stamp(self.shard_path(name))
            if stamp is None or stamp[1] > table_time:
                out.append(name)
        return sorted(out)

    def verify(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """{shard: what is wrong} for the committed shards (``names``: only these) whose file is missing or
        does not match its checksum; every byte is read (streamed)."""
        bad = {}
        for name in sorted(self._checksums() if names is None else names):
            self._verified.pop(name, None)
            try:
                self._verify(name, self.shard_path(name))
            except StoreError as exc:
                bad[name] = str(exc)
        return bad

    def drop_shards(self, names: Iterable[str]) -> int:
        """Drop the rows of ``names`` and delete their files (a build then embeds those images again);
        commits, returns the number of rows dropped."""
        import pyarrow as pa

        gone = set(names)
        if not gone:
            return 0
        table = self._read_table()
        keep = np.array([s not in gone for s in table.column("shard").to_pylist()], dtype=bool)
        self._table = table.filter(pa.array(keep))
        self.commit()
        for name in gone:
            self.shard_path(name).unlink(missing_ok=True)
            self._verified.pop(name, None)
        return int((~keep).sum())

    def unindexed_shards(self) -> list[str]:
        """Shard files on disk that no committed row uses (e.g. a store whose table was lost)."""
        self._read_table()
        on_disk = {p.name[: -len(".safetensors")] for p in self.shard_dir.glob("*.safetensors")}
        return sorted(on_disk - self._known_shards)

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def _checksums(self) -> dict[str, str]:
        t = self._read_table()
        if self._sums is None or self._sums[0] is not t:
            self._sums = (t, dict(zip(t.column("shard").to_pylist(), t.column("checksum").to_pylist(), strict=False)))
        return self._sums[1]

    def by_shard(self) -> dict[str, tuple[list[str], list[int]]]:
        """{shard: (ids, rows)} of the committed rows, shards in first-use order."""
        t = self._read_table()
        out: dict[str, tuple[list[str], list[int]]] = {}
        for i, s, r in zip(
            t.column("id").to_pylist(), t.column("shard").to_pylist(), t.column("row").to_pylist(), strict=False
        ):
            ids, rows = out.setdefault(s, ([], []))
            ids.append(i)
            rows.append(r)
        return out

    def locate(self) -> dict[str, tuple[str, int]]:
        """{id: (shard, row)} of the committed rows (cached until the table changes)."""
        t = self._read_table()
        if self._where is None or self._where[0] is not t:
            ids, shards, rows = (t.column(c).to_pylist() for c in ("id", "shard", "row"))
            self._where = (t, {i: (s, r) for i, s, r in zip(ids, shards, rows, strict=True)})
        return self._where[1]

    def iter_shards(self) -> Iterator[tuple[str, Features]]:
        """(shard name, Features of its current rows, names = ids), one shard in memory at a time."""
        cfg = self.feature_config
        for name, (ids, rows) in self.by_shard().items():
            yield name, Features(self.load_shard(name, rows), cfg, list(ids))

    def load(self, ids: Sequence[str] | None = None, shard: str | None = None) -> Features:
        """Features of the given ids (in that order), or of one shard, or of every image (small stores)."""
        if shard is not None:
            ids_rows = self.by_shard().get(shard)
            if ids_rows is None:
                raise StoreError(f"store {self.folder} has no shard {shard!r}")
            return Features(self.load_shard(shard, ids_rows[1]), self.feature_config, list(ids_rows[0]))
        where = self.locate()
        wanted = list(where) if ids is None else list(ids)
        if not wanted:
            raise StoreError(f"store {self.folder} is empty")
        unknown = [i for i in wanted if i not in where]
        if unknown:
            raise StoreError(
                f"not in store {self.folder}: {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}"
            )
        by: dict[str, list[int]] = {}
        for pos, i in enumerate(wanted):
            by.setdefault(where[i][0], []).append(pos)
        parts: dict[int, dict[str, torch.Tensor]] = {}
        for s, positions in by.items():
            tensors = self.load_shard(s, [where[wanted[p]][1] for p in positions])
            for j, p in enumerate(positions):
                parts[p] = {k: v[j : j + 1] for k, v in tensors.items()}
        keys = parts[0].keys()
        stacked = {k: torch.cat([parts[p][k] for p in range(len(wanted))]) for k in keys}
        return Features(stacked, self.feature_config, wanted)

    # ----------------------------------------------------------------- errors
    def errors(self) -> list[dict[str, str]]:
        """[{"path", "reason"}] of the images the builds could not read."""
        p = self.folder / ERRORS_FILE
        return json.loads(p.read_text()) if p.exists() else []

    def _write_errors(self, errors: list[dict[str, str]]) -> None:
        _atomic_write(self.folder / ERRORS_FILE, json.dumps(errors, indent=1).encode())

    def set_errors(self, errors: Iterable[tuple[str, str]]) -> None:
        """Replace the error list with ``(path, reason)`` pairs (the latest build's view)."""
        self._write_errors([{"path": p, "reason": r} for p, r in errors])

    def nbytes(self) -> int:
        """Bytes on disk: shards, table, settings and errors."""
        files = [
            *self.shard_dir.glob("*.safetensors"),
            self.folder / INDEX_FILE,
            self.folder / SETTINGS_FILE,
            self.folder / ERRORS_FILE,
            self.folder / PROJECTION_FILE,
        ]
        return sum(p.stat().st_size for p in files if p.exists())


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file held in memory (header: 8-byte length, then JSON)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n].decode()).get("__metadata__") or {}


def encode_tensors(feats: Features, compact: str, projection: Projection | None = None) -> dict[str, torch.Tensor]:
    """The tensors a shard stores for ``feats`` in mode ``compact`` (fp16: half precision; int8: codes plus
    ``KEY#scale``, one fp16 scale per image, head and channel; pca modes: ``projection``'s int8 components)."""
    if parse_mode(compact).projected:
        if projection is None:
            raise ConfigError(f"compact={compact} needs a fitted projection")
        return projection.encode(feats)
    out: dict[str, torch.Tensor] = {}
    for k, v in feats.tensors.items():
        v = v.detach().cpu()
        if compact == "fp16" and v.is_floating_point():
            v = v.to(torch.float16)
        elif compact == "int8" and v.is_floating_point() and v.dim() >= 3:
            v, out[k + SCALE_SUFFIX] = quantise_int8(v)
        out[k] = v
    return out


def decode_tensors(
    tensors: dict[str, torch.Tensor], compact: str, projection: Projection | None = None
) -> dict[str, torch.Tensor]:
    """Stored tensors back to features of the original shapes (inverse of :func:`encode_tensors`): float32 for
    the compact modes; a ``none`` store's tensors as stored."""
    out = dict(tensors)
    for k in [k for k in out if k.endswith(SCALE_SUFFIX)]:
        scale = out.pop(k)
        base = k[: -len(SCALE_SUFFIX)]
        out[base] = out[base].float() * scale.float()
    if projection is not None:
        out = {k: projection.reconstruct(k, v) if k in projection.bases else v for k, v in out.items()}
    if compact == "fp16":
        out = {k: v.float() if v.is_floating_point() else v for k, v in out.items()}
    return out


def _read_rows(sl: Any, rows: list[int]) -> torch.Tensor:
    """Rows ``rows`` (in that order) of a safetensors slice, reading each contiguous run once."""
    if not rows:
        return sl[0:0]
    uniq = sorted(set(rows))
    runs: list[tuple[int, int]] = []
    for r in uniq:
        if runs and runs[-1][1] == r:
            runs[-1] = (runs[-1][0], r + 1)
        else:
            runs.append((r, r + 1))
    got = torch.cat([sl[a:b] for a, b in runs]) if len(runs) > 1 else sl[runs[0][0] : runs[0][1]]
    pos = {r: i for i, r in enumerate(uniq)}
    if uniq == rows:
        return got
    return got.index_select(0, torch.as_tensor([pos[r] for r in rows], dtype=torch.long))


def _rows_to_table(rows: list[Row]) -> Any:
    """The table of ``rows`` (their pooled vectors stay in the shards)."""
    import pyarrow as pa

    return pa.table(
        {
            "id": pa.array([r.id for r in rows], type=pa.string()),
            "path": pa.array([r.path for r in rows], type=pa.string()),
            "hash": pa.array([r.hash for r in rows], type=pa.string()),
            "shard": pa.array([r.shard for r in rows], type=pa.string()),
            "row": pa.array([r.row for r in rows], type=pa.int32()),
            "checksum": pa.array([r.checksum for r in rows], type=pa.string()),
        }
    )
