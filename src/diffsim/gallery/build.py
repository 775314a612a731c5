"""Build (or update) a gallery store locally: stream images through DataLoader workers, write shards.

Memory holds one shard's worth of features at a time, whatever the number of images. Images already
stored with the same content hash are skipped (a rerun embeds nothing; an appended image or a changed
file is embedded), and shards left uncommitted by an interrupted build are recovered first, so a
killed build resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..bounds import check_float, check_int
from ..errors import ImageError
from ..features import Features
from ..loader import ImageLoader
from .sources import Source, Sources
from .store import GalleryStore

logger = logging.getLogger(__name__)

#: target bytes of features per shard when no ``shard_size`` is given
SHARD_BYTES = 256 * 1024**2
MAX_SHARD_IMAGES = 4096
#: test hook: exit the process (as if killed) right after writing this many shards
EXIT_AFTER_ENV = "DIFFSIM_GALLERY_EXIT_AFTER_SHARDS"


@dataclass
class BuildReport:
    """What a build did."""

    total: int = 0  # images in the gallery
    embedded: int = 0  # images run through the network by this build
    skipped: int = 0  # already stored with the same content
    recovered: int = 0  # taken from shards an interrupted build had written
    shards: list[str] = field(default_factory=list)  # shards written by this build
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


class _ShardWriter:
    """Buffers embedded images and writes a shard when ``size`` images are waiting."""

    def __init__(self, store: GalleryStore, size: int | None, commit_every: float) -> None:
        self.store, self.size, self.commit_every = store, size, commit_every
        self.items: list[tuple[Source, str, Features, torch.Tensor]] = []
        self.written: list[str] = []
        self.last_commit = time.monotonic()
        self.exit_after = int(os.environ.get(EXIT_AFTER_ENV, "0") or 0)

    def add(self, source: Source, hash_: str, feats: Features, pooled: torch.Tensor) -> None:
        if self.size is None:  # shard size from the first image's feature bytes
            self.size = max(1, min(MAX_SHARD_IMAGES, SHARD_BYTES // max(1, feats.nbytes)))
        self.items.append((source, hash_, feats, pooled))
        if len(self.items) >= self.size:
            self.flush()

    def flush(self, final: bool = False) -> None:
        if self.items:
            srcs, hashes, feats, pooled = zip(*self.items, strict=False)
            record = self.store.write_shard(
                [s.id for s in srcs], [s.path for s in srcs], list(hashes), Features.cat(feats), torch.cat(pooled)
            )
            self.items = []
            self.store.add_shard(record)
            self.written.append(record.name)
            if self.exit_after and len(self.written) >= self.exit_after:
                logger.warning("%s=%d: exiting without committing the table", EXIT_AFTER_ENV, self.exit_after)
                os._exit(3)
        if final or time.monotonic() - self.last_commit >= self.commit_every:
            self.store.commit()
            self.last_commit = time.monotonic()


def _stream_metric(metric: Any, batch_size: int | None) -> Any:
    """The metric with the given batch size and no in-memory feature cache (which would grow with the gallery)."""
    changes: dict[str, Any] = {}
    s = metric.settings
    if getattr(s, "cache_bytes", 0):
        changes["cache_bytes"] = 0
    if batch_size is not None and getattr(s, "batch_size", batch_size) != batch_size:
        changes["batch_size"] = batch_size
    return metric.with_settings(**changes) if changes else metric


def plan(
    sources: Sources, store: GalleryStore, strict: bool = False
) -> tuple[list[tuple[Source, str]], int, list[tuple[str, str]]]:
    """(images to embed with their content hashes, how many are already stored, unreadable files)."""
    known = store.hashes()
    todo: list[tuple[Source, str]] = []
    skipped = 0
    failures: list[tuple[str, str]] = []
    from .store import file_hash

    for src in sources:
        try:
            h = file_hash(src.path)
        except OSError as exc:
            if strict:
                raise ImageError(f"cannot read {src.path}: {exc.strerror or exc}") from exc
            failures.append((src.path, f"cannot read: {exc.strerror or exc}"))
            continue
        if known.get(src.id) == h:
            skipped += 1
        else:
            todo.append((src, h))
    return todo, skipped, failures


def _check_numbers(batch_size: Any, num_workers: Any, shard_size: Any, commit_every: Any) -> None:
    """The numeric arguments of :func:`build_index`, checked before any image is read."""
    for name, value, low in (
        ("batch_size", batch_size, 1),
        ("num_workers", num_workers, 0),
        ("shard_size", shard_size, 1),
    ):
        if value is not None:
            check_int(name, value, minimum=low)
    check_float("commit_every", commit_every, positive=True, allow_zero=False)


def build_index(
    sources: Sources,
    store: GalleryStore,
    metric: Any,
    batch_size: int | None = None,
    num_workers: int | None = 0,
    strict: bool = False,
    progress: bool = False,
    shard_size: int | None = None,
    commit_every: float = 30.0,
    on_batch: Callable[[int], None] | None = None,
) -> BuildReport:
    """Embed the images of ``sources`` that ``store`` lacks (or that changed) and write them as shards.

    ``batch_size``: images per network pass (default: the metric's); ``num_workers``: DataLoader decode
    processes (None: 0 on CPU, up to 8 on CUDA); ``strict``: stop at the first unreadable image instead of
    recording it; ``shard_size``: images per shard (default: about 256 MiB of features); the table is
    committed every ``commit_every`` seconds and at the end (an interrupted build's shards are recovered).
    """
    _check_numbers(batch_size, num_workers, shard_size, commit_every)
    t0 = time.perf_counter()
    report = BuildReport(total=len(sources))
    store.check_metric(metric)
    report.recovered = store.recover()
    todo, report.skipped, report.failures = plan(sources, store, strict)
    writer = _ShardWriter(store, shard_size, commit_every)
    if todo:
        m = _stream_metric(metric, batch_size)
        loader = ImageLoader(
            [s.path for s, _ in todo],
            m.preprocessor,
            m.settings.batch_size,
            device=m.device,
            num_workers=num_workers,
            strict=strict,
        )
        bar, failed = None, 0
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), unit="img", desc="embedding", dynamic_ncols=True)
        try:
            for indices, pixels in loader:
                idx = indices.tolist()
                feats = m.embed_pixels(pixels, [todo[i][0].id for i in idx]).to("cpu")
                pooled = m.pool(feats).cpu()
                for j, i in enumerate(idx):
                    writer.add(todo[i][0], todo[i][1], feats[j], pooled[j : j + 1])
                report.embedded += len(idx)
                if bar is not None:
                    bar.update(len(idx) + len(loader.failures) - failed)
                    failed = len(loader.failures)
                if on_batch is not None:
                    on_batch(report.embedded)
        finally:
            if bar is not None:
                bar.close()
        report.failures += [(f.source, f.reason) for f in loader.failures]
    writer.flush(final=True)
    report.shards = writer.written
    store.set_errors(report.failures)
    report.seconds = time.perf_counter() - t0
    logger.info(
        "built %s: %d embedded, %d already stored, %d recovered, %d unreadable in %.1f s",
        store.folder,
        report.embedded,
        report.skipped,
        report.recovered,
        len(report.failures),
        report.seconds,
    )
    return report
