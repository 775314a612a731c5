"""The runner of a gallery build: reader -> decoder -> mapper -> writer, distributed by an engine.

:func:`run_build` is the one build loop. It takes the store's build lock, recovers shards an interrupted
build wrote, and asks an :class:`Engine` to turn the gallery's records into :class:`Outcome` s (rows of
written shards, skipped ids, failures); it stages the rows in the table, commits every ``commit_every``
seconds and at the end (also when interrupted: a rerun resumes), records the failures, and on a
complete gallery drops the rows of images no longer in it. Engines only distribute:

* :class:`LocalEngine`: this process embeds, DataLoader workers read and decode;
* torchrun / SLURM ranks: a :class:`LocalEngine` build of the ids one rank holds (``keep``), joined
  by :func:`diffsim.scale.merge.merge_stores`;
* the Ray engine (:class:`diffsim.scale.ray_engine.RayEngine`): Ray tasks decode, actors embed and write shards.

Every engine decodes with :func:`~diffsim.gallery.decode.decode_record`, embeds with
:class:`~diffsim.gallery.mapper.Mapper` and writes with :mod:`~diffsim.gallery.writer`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import ConfigError, ImageError, StoreError
from ..images import max_pixels
from .decode import EMBED, FAIL, SKIP, Decoded, decode_record
from .lock import build_lock
from .mapper import Mapper, threads_for
from .readers import GalleryInput
from .store import GalleryStore, Row
from .writer import ShardWriter, TableWriter

logger = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What a build did."""

    total: int = 0  # images in the gallery
    embedded: int = 0  # images run through the network by this build
    skipped: int = 0  # already stored with the same content
    recovered: int = 0  # taken from shards an interrupted build had written
    damaged: int = 0  # stored images whose shard no longer matched its checksum: embedded again
    removed: int = 0  # stored images no longer in the gallery, dropped from the table
    shards: list[str] = field(default_factory=list)  # shards written by this build
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0
    store: Any = None  # the GalleryStore built

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Outcome:
    """What an engine hands the runner: rows of written shards, and what happened to each record."""

    rows: list[Row] = field(default_factory=list)  # of shards now on disk (not yet in the table)
    embedded: int = 0  # images embedded (their rows may come in a later outcome)
    skipped: list[str] = field(default_factory=list)  # ids stored with the same content
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (id, path, reason)


class Engine(Protocol):
    """Distributes a build: records in, outcomes out (the runner writes the table)."""

    name: str
    commit_every: float

    def check(self, metric: Any) -> None:
        """Refuse, before any store is created, a metric this engine cannot run as the store records it."""

    def run(
        self,
        inp: GalleryInput,
        store: GalleryStore,
        metric: Any,
        known: Mapping[str, str],
        keep: Callable[[str], bool] | None,
    ) -> Iterator[Outcome]: ...


# ----------------------------------------------------------------------------------- local engine
class RecordStream(IterableDataset):
    """The gallery's decoded records; DataLoader worker ``w`` of ``n`` decodes records ``w, w + n, ...``."""

    def __init__(
        self,
        inp: GalleryInput,
        keep: Callable[[str], bool] | None,
        known: Mapping[str, str],
        preprocess: Any,
        limit: int,
    ) -> None:
        self.inp, self.keep, self.known, self.preprocess, self.limit = inp, keep, dict(known), preprocess, limit

    def __iter__(self) -> Iterator[Decoded]:
        info = get_worker_info()
        n, w = (info.num_workers, info.id) if info is not None else (1, 0)
        records = (r for r in self.inp.records() if self.keep is None or self.keep(r.id))
        for i, rec in enumerate(records):
            if i % n == w:
                yield decode_record(rec, self.preprocess, self.known, self.limit)


@dataclass
class DecodedBatch:
    """Decoded records of one DataLoader batch, the pixels of the embeddable ones stacked."""

    items: list[Decoded]
    pixels: torch.Tensor | None

    def pin_memory(self) -> DecodedBatch:  # called by the DataLoader's pinning thread
        return DecodedBatch(self.items, None if self.pixels is None else self.pixels.pin_memory())


def collate(items: list[Decoded]) -> DecodedBatch:
    px = [d.pixels for d in items if d.status == EMBED and d.pixels is not None]
    for d in items:
        d.pixels = None
    return DecodedBatch(items, torch.stack(px) if px else None)


def single_thread(_worker_id: int) -> None:
    """DataLoader worker init: decode with one torch thread (the embedding process has the others)."""
    torch.set_num_threads(1)


def default_workers(device: torch.device) -> int:
    """Decode processes: on CUDA up to 8 (leaving one core), on a CPU none (the model needs every core)."""
    from ..loader import default_workers as loader_default

    return loader_default(device)


class LocalEngine:
    """This process embeds; ``num_workers`` DataLoader processes read and decode (None: 0 on a CPU, up to 8
    on CUDA); the embedding runs with ``threads`` torch threads (None: the cores the workers leave)."""

    name = "local"

    def __init__(
        self,
        batch_size: int | None = None,
        num_workers: int | None = 0,
        shard_size: int | None = None,
        commit_every: float = 30.0,
        threads: int | None = None,
    ) -> None:
        self.batch_size, self.num_workers, self.shard_size = batch_size, num_workers, shard_size
        self.commit_every, self.threads = commit_every, threads

    def check(self, metric: Any) -> None:
        """Nothing to refuse: this process runs the metric as given."""

    def run(
        self,
        inp: GalleryInput,
        store: GalleryStore,
        metric: Any,
        known: Mapping[str, str],
        keep: Callable[[str], bool] | None,
    ) -> Iterator[Outcome]:
        mapper = Mapper(metric, self.batch_size)
        workers = default_workers(mapper.device) if self.num_workers is None else int(self.num_workers)
        threads = threads_for(self.threads, workers)
        loader = DataLoader(
            RecordStream(inp, keep, known, metric.preprocessor, max_pixels()),
            batch_size=mapper.batch_size,
            num_workers=workers,
            collate_fn=collate,
            worker_init_fn=single_thread if workers else None,
            pin_memory=mapper.device.type == "cuda",
            prefetch_factor=2 if workers else None,
        )
        writer = ShardWriter(store, self.shard_size)
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        logger.info("local build: %d decode worker(s), %d torch thread(s)", workers, threads)
        try:
            for batch in loader:
                out = Outcome(
                    skipped=[d.id for d in batch.items if d.status == SKIP],
                    failures=[(d.id, d.path, d.reason) for d in batch.items if d.status == FAIL],
                )
                todo = [d for d in batch.items if d.status == EMBED]
                if todo and batch.pixels is not None:
                    feats, pooled = mapper(batch.pixels, [d.id for d in todo])
                    for j, d in enumerate(todo):
                        for record in writer.add(d.id, d.path, d.hash, feats[j], pooled[j : j + 1]):
                            out.rows += record.rows
                    out.embedded = len(todo)
                yield out
            last = writer.finish()
            if last:
                yield Outcome(rows=[r for record in last for r in record.rows])
        finally:
            writer.discard()
            torch.set_num_threads(before)


# ----------------------------------------------------------------------------------- the runner
def _drop_damaged(store: GalleryStore) -> int:
    """Verify the shards changed since the table was written; drop the rows of damaged ones (re-embedded)."""
    bad = store.verify(store.changed_shards())
    for why in bad.values():
        logger.warning("%s; its images are embedded again", why.split(";")[0])
    return store.drop_shards(bad)


def run_build(
    inp: GalleryInput,
    store: GalleryStore | str | os.PathLike,
    metric: Any,
    engine: Engine,
    *,
    compact: str | None = None,
    strict: bool = False,
    progress: bool = False,
    keep: Callable[[str], bool] | None = None,
    prune: bool | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> BuildReport:
    """The one build entry point: embed the images of ``inp`` (those ``keep`` accepts) that ``store``
    lacks or that changed.

    ``store``: an open store, or a folder (opened, or created with ``compact`` and ``inp.root`` only after
    the checks pass). The metric is checked against the store and by the engine (e.g. a GPU dtype) here,
    once. ``strict``: stop at the first unreadable image instead of recording it; ``prune``: drop the rows
    of stored images that are not in ``inp`` (default: when ``inp`` is a whole gallery, not loose image
    paths); ``on_batch(embedded)`` is called as results arrive. ``report.store`` is the store built.
    """
    engine.check(metric)
    if not isinstance(store, GalleryStore):
        with build_lock(store):
            store = GalleryStore.open_or_create(store, metric, compact, root=inp.root)
    elif compact is not None and compact != store.compact:
        raise StoreError(f"store {store.folder} was built with compact={store.compact!r}, not {compact!r}")
    if store.needs_projection and engine.name != "local":
        raise ConfigError(
            f"compact={store.compact} fits its projection on the first images of a local build; build part of "
            f"the gallery into {store.folder} without --engine {engine.name} first, then go on with it"
        )
    t0 = time.perf_counter()
    report = BuildReport(total=inp.total or 0, store=store)
    store.check_metric(metric)
    with build_lock(store.folder):
        report.recovered = store.recover()
        report.damaged = _drop_damaged(store)
        known = store.hashes()
        table = TableWriter(store, engine.commit_every)
        present: set[str] = set()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            desc = "embedding" if engine.name == "local" else f"embedding ({engine.name})"
            bar = tqdm(total=inp.total, unit="img", desc=desc, dynamic_ncols=True)
        running, done = 0, False
        try:
            for out in engine.run(inp, store, metric, known, keep):
                for _id, path, reason in out.failures:
                    if strict:
                        raise ImageError(reason if path in reason else f"{path}: {reason}")
                    logger.warning("skipping %s: %s", path, reason)
                table.add(out.rows)
                present.update(out.skipped)
                present.update(i for i, _, _ in out.failures)
                present.update(r.id for r in out.rows)
                report.skipped += len(out.skipped)
                report.failures += [(p, r) for _, p, r in out.failures]
                running += out.embedded
                if bar is not None:
                    bar.update(out.embedded + len(out.skipped) + len(out.failures))
                if on_batch is not None and out.embedded:
                    on_batch(running)
            done = True
        finally:
            if bar is not None:
                bar.close()
            table.commit()  # also when interrupted: the shards written so far are kept
        report.embedded, report.shards = len(table.seen), table.shards
        if prune if prune is not None else inp.complete:
            gone = [i for i in store.ids() if i not in present]
            if gone and done:
                report.removed = store.remove(gone)
                logger.info("dropped %d image(s) no longer in the gallery", report.removed)
        store.set_errors(report.failures)
    report.total = report.total or report.embedded + report.skipped + len(report.failures)
    report.seconds = time.perf_counter() - t0
    logger.info(
        "built %s (%s engine): %d embedded, %d already stored, %d recovered, %d removed, %d unreadable in %.1f s",
        store.folder,
        engine.name,
        report.embedded,
        report.skipped,
        report.recovered,
        report.removed,
        len(report.failures),
        report.seconds,
    )
    return report
