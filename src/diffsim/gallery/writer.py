"""The writer of a gallery build: embedded images -> shard files, and shard rows -> the store's table.

:class:`ShardWriter` buffers embedded images and writes a shard when ``size`` are waiting (any process
may write shards); :func:`write_named_shard` writes one batch under a name fixed by its content, so a
retried batch (a restarted Ray actor) finds the shard its first attempt wrote. :class:`TableWriter`
stages the rows of written shards in the store's table and commits it every ``commit_every`` seconds
(only the driver process writes the table).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence

import torch

from ..features import Features
from .compact import FIT_BYTES, FIT_IMAGES, Projection
from .store import GalleryStore, PendingShard, Row, ShardRecord

logger = logging.getLogger(__name__)

#: target bytes of features per shard when no ``shard_size`` is given
SHARD_BYTES = 256 * 1024**2
MAX_SHARD_IMAGES = 4096


class ShardWriter:
    """Streams embedded images into a shard file; writes it (and returns its record) when ``size`` are in.

    Only one image is in memory at a time (:class:`~diffsim.gallery.store.PendingShard` spills to disk),
    so the shard size bounds the file, not the memory. A ``pca`` store without a fitted projection first
    holds its first images (at most ``FIT_IMAGES`` of them, or ``FIT_BYTES`` of features:
    :mod:`~diffsim.gallery.compact`), fits the projection on them, saves it in the store, then writes them."""

    def __init__(self, store: GalleryStore, size: int | None) -> None:
        self.store, self.size = store, size
        self.pending: PendingShard | None = None
        self.sample: list[tuple[str, str, str, Features, torch.Tensor]] = []
        self.sample_bytes = 0

    def add(self, id: str, path: str, hash_: str, feats: Features, pooled: torch.Tensor) -> list[ShardRecord]:
        """Add one image; returns the shards this wrote (none until ``size`` images wait)."""
        if self.store.needs_projection:
            self.sample.append((id, path, hash_, feats, pooled))
            self.sample_bytes += feats.nbytes
            return self.fit() if len(self.sample) >= FIT_IMAGES or self.sample_bytes >= FIT_BYTES else []
        if self.size is None:  # shard size from the first image's feature bytes
            self.size = max(1, min(MAX_SHARD_IMAGES, SHARD_BYTES // max(1, feats.nbytes)))
        if self.pending is None:
            self.pending = self.store.begin_shard()
        self.pending.add([id], [path], [hash_], feats, pooled.reshape(1, -1))
        return self.write() if len(self.pending) >= self.size else []

    def fit(self) -> list[ShardRecord]:
        """Fit the store's projection on the held images, save it, then write them."""
        if not self.sample:
            return []
        self.store.set_projection(Projection.fit(self.store.compact, (s[3] for s in self.sample)))
        logger.info("fitted the %s projection on %d image(s)", self.store.compact, len(self.sample))
        held, self.sample, self.sample_bytes = self.sample, [], 0
        out: list[ShardRecord] = []
        for item in held:
            out += self.add(*item)
        return out

    def write(self) -> list[ShardRecord]:
        record = self.flush()
        return [] if record is None else [record]

    def finish(self) -> list[ShardRecord]:
        """Write everything that waits (fitting the projection on fewer images if the build was short)."""
        return self.fit() + self.write()

    def flush(self) -> ShardRecord | None:
        """Write the images added so far as one shard (None when nothing waits)."""
        pending, self.pending = self.pending, None
        if pending is None or not len(pending):
            return None
        record = self.store.finish_shard(pending)
        release_freed_memory()
        return record

    def discard(self) -> None:
        """Drop the images not yet written (an interrupted build embeds them again)."""
        self.sample, self.sample_bytes = [], 0
        if self.pending is not None:
            self.pending.discard()
            self.pending = None


def release_freed_memory() -> None:
    """Hand memory freed since the last shard back to the system (glibc ``malloc_trim``; elsewhere nothing).

    The batches' feature tensors come and go in sizes above glibc's (adaptive) mmap threshold; without a
    trim the heap keeps the freed pages and a long build's RSS creeps up (measured: ~90 MB over 20,000
    images at 256 px)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def shard_name(ids: Sequence[str], hashes: Sequence[str]) -> str:
    """A name fixed by the batch's content: a retried batch finds the shard its first attempt wrote."""
    h = hashlib.blake2b(digest_size=12)
    for i, d in zip(ids, hashes, strict=True):
        h.update(i.encode("utf-8") + b"\0" + d.encode() + b"\n")
    return "ray-" + h.hexdigest()


def existing_shard(store: GalleryStore, ids: Sequence[str], hashes: Sequence[str]) -> ShardRecord | None:
    """The shard of this exact batch if an earlier attempt wrote it, else None."""
    name = shard_name(ids, hashes)
    if not store.shard_path(name).exists():
        return None
    record = store.read_record(name)
    if [r.id for r in record.rows] == list(ids) and [r.hash for r in record.rows] == list(hashes):
        logger.info("%s already written (a retried batch): not embedded again", name)
        return record
    return None


def write_named_shard(
    store: GalleryStore,
    ids: Sequence[str],
    paths: Sequence[str],
    hashes: Sequence[str],
    feats: Features,
    pooled: torch.Tensor,
) -> ShardRecord:
    """Write one batch as the shard named by its content (another attempt's shard is reused)."""
    try:
        return store.write_shard(ids, paths, hashes, feats, pooled, name=shard_name(ids, hashes))
    except FileExistsError:  # another attempt of the same batch finished first
        return store.read_record(shard_name(ids, hashes))


class TableWriter:
    """Stages shard rows in the store's table (each id once) and commits every ``commit_every`` seconds."""

    def __init__(self, store: GalleryStore, commit_every: float = 30.0) -> None:
        self.store, self.commit_every = store, commit_every
        self.seen: set[str] = set()
        self.shards: list[str] = []
        self.last = time.monotonic()

    def add(self, rows: Iterable[Row]) -> int:
        """Stage ``rows`` (an id already staged by this build is kept once); returns how many were new."""
        fresh = [r for r in rows if r.id not in self.seen]
        self.seen.update(r.id for r in fresh)
        self.store.add_rows(fresh)
        self.shards += [s for s in dict.fromkeys(r.shard for r in fresh) if s not in self.shards]
        if time.monotonic() - self.last >= self.commit_every:
            self.commit()
        return len(fresh)

    def commit(self) -> None:
        self.store.commit()
        self.last = time.monotonic()
