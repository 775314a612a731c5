"""Build (or update) a gallery store in this process: :func:`build_index` over a list of image files.

A thin entry point to the one pipeline (:mod:`diffsim.gallery.runner`): the files are read and decoded
in DataLoader workers, embedded here and written as shards. Memory holds one shard's worth of features
at a time, whatever the number of images. Images already stored with the same content hash are skipped
(a rerun embeds nothing; an appended image or a changed file is embedded), shards left uncommitted by
an interrupted build are recovered first (a killed build resumes where it stopped), and rows of images
no longer in the gallery are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..bounds import check_float, check_int
from .mapper import stream_metric
from .readers import GalleryInput, files_input
from .runner import BuildReport, LocalEngine, run_build
from .sources import Sources
from .store import GalleryStore
from .writer import MAX_SHARD_IMAGES, SHARD_BYTES

__all__ = ["MAX_SHARD_IMAGES", "SHARD_BYTES", "BuildReport", "build_index", "files_input", "stream_metric"]


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
    sources: Sources | GalleryInput,
    store: GalleryStore,
    metric: Any,
    batch_size: int | None = None,
    num_workers: int | None = 0,
    strict: bool = False,
    progress: bool = False,
    shard_size: int | None = None,
    commit_every: float = 30.0,
    on_batch: Callable[[int], None] | None = None,
    threads: int | None = None,
    prune: bool | None = None,
) -> BuildReport:
    """Embed the images of ``sources`` that ``store`` lacks (or that changed) and write them as shards.

    ``sources``: listed image files (:func:`~diffsim.gallery.sources.collect`) or any reader
    (:func:`~diffsim.gallery.readers.open_gallery`: parquet, webdataset); ``batch_size``: images per
    network pass (default: the metric's); ``num_workers``: DataLoader decode processes (None: 0 on CPU,
    up to 8 on CUDA); ``threads``: torch threads of the embedding (default: the cores the workers leave);
    ``strict``: stop at the first unreadable image instead of recording it; ``shard_size``: images per
    shard (default: about 256 MiB of features); the table is committed every ``commit_every`` seconds
    and at the end; ``prune``: drop stored images not in ``sources`` (default: when it is a folder, a
    list file or shards, not loose image paths).
    """
    _check_numbers(batch_size, num_workers, shard_size, commit_every)
    inp = sources if isinstance(sources, GalleryInput) else files_input(sources)
    engine = LocalEngine(batch_size, num_workers, shard_size, commit_every, threads)
    return run_build(inp, store, metric, engine, strict=strict, progress=progress, prune=prune, on_batch=on_batch)
