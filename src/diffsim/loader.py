"""Overlapped image input: decode and resize in DataLoader workers while the accelerator computes.

:class:`ImageLoader` iterates over a list of image sources (paths, PIL images, arrays, tensors) in
batches of ``(indices, pixels)``. A picklable ``preprocess(image, index) -> Tensor`` (a metric's
``preprocessor``, e.g. :class:`diffsim.preprocess.Resize`) runs in ``torch.utils.data`` worker processes;
on CUDA the batches come in pinned memory and are copied with ``non_blocking=True``, so the GPU does not
wait for Pillow. Unreadable images are recorded in :attr:`ImageLoader.failures` as ``(index, source,
reason)`` and skipped (``strict=True`` raises :class:`~diffsim.errors.ImageError` instead). Only the
sources list and the prefetched batches are held: memory does not grow with the number of images.

``batch_size="auto"`` (:func:`auto_batch_size`) probes the largest batch that fits the free GPU memory
by doubling then bisecting with a caller-given probe (:func:`probe_for` a metric: one ``forward`` pass on
blank images); on a CPU, or without a probe, it uses the fixed ``fallback`` batch.

Typical use with a metric (the features go through its cache, exactly as ``metric.embed`` would)::

    loader = ImageLoader(paths, metric.preprocessor, batch_size="auto", probe=probe_for(metric))
    for indices, pixels in loader:
        feats = metric.embed_pixels(pixels)
"""

from __future__ import annotations

import gc
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .devices import resolve_device
from .errors import ConfigError, DiffSimError, ImageError
from .images import ImageLike, describe

logger = logging.getLogger(__name__)

PreprocessFn = Callable[[ImageLike, int], torch.Tensor]


@dataclass(frozen=True)
class Failure:
    """An image that could not be read or preprocessed."""

    index: int
    source: str
    reason: str


class ImageDataset(Dataset):
    """``dataset[i] -> (i, pixels, None)`` or ``(i, None, (source, reason))`` when image ``i`` fails."""

    def __init__(self, sources: Sequence[ImageLike], preprocess: PreprocessFn) -> None:
        self.sources = sources if isinstance(sources, Sequence) else list(sources)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, tuple[str, str] | None]:
        source = self.sources[index]
        try:
            return index, self.preprocess(source, index), None
        except (DiffSimError, OSError, ValueError) as exc:
            return index, None, (describe(source, index), str(exc))


@dataclass
class Batch:
    """What the workers hand over: the indices and stacked pixels of the readable images, and the failures."""

    indices: torch.Tensor
    pixels: torch.Tensor | None
    failures: list[Failure] = field(default_factory=list)

    def pin_memory(self) -> Batch:  # called by the DataLoader's pinning thread
        return Batch(
            self.indices.pin_memory(), None if self.pixels is None else self.pixels.pin_memory(), self.failures
        )


def collate(items: list[tuple[int, torch.Tensor | None, tuple[str, str] | None]]) -> Batch:
    """Stack the readable images of a batch; list the others as :class:`Failure`."""
    ok = [(i, x) for i, x, _ in items if x is not None]
    failures = [Failure(i, err[0], err[1]) for i, x, err in items if x is None and err is not None]
    indices = torch.tensor([i for i, _ in ok], dtype=torch.long)
    pixels = torch.stack([x for _, x in ok]) if ok else None
    return Batch(indices, pixels, failures)


def default_workers(device: torch.device) -> int:
    """Worker processes: on CUDA up to 8 (leaving one core), on CPU none (the model needs every core)."""
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class ImageLoader:
    """Iterate ``(indices (B,), pixels (B, ...))`` over ``sources`` with ``preprocess`` in worker processes.

    ``indices`` are positions in ``sources`` (failed images are missing from them); ``pixels`` are on
    ``device``. :attr:`failures` lists every unreadable image seen so far.
    """

    def __init__(
        self,
        sources: Sequence[ImageLike],
        preprocess: PreprocessFn,
        batch_size: int | str = 8,
        *,
        device: str | torch.device | None = None,
        num_workers: int | None = None,
        strict: bool = False,
        probe: Callable[[int], None] | None = None,
        fallback_batch: int = 8,
        prefetch_factor: int = 2,
        max_batch: int = 256,
    ) -> None:
        self.dataset = ImageDataset(sources, preprocess)
        self.device = resolve_device(device)
        if batch_size == "auto":
            batch_size = auto_batch_size(probe, self.device, fallback=fallback_batch, limit=max_batch)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer or 'auto'; got {batch_size!r}")
        self.batch_size = batch_size
        self.num_workers = default_workers(self.device) if num_workers is None else int(num_workers)
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0; got {num_workers!r}")
        self.strict = bool(strict)
        self.prefetch_factor = prefetch_factor
        self.failures: list[Failure] = []

    def __len__(self) -> int:
        """Number of batches."""
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        workers = self.num_workers
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=self.prefetch_factor if workers else None,
        )
        for batch in loader:
            for f in batch.failures:
                if self.strict:
                    raise ImageError(f.reason if f.source in f.reason else f"{f.source}: {f.reason}")
                logger.warning("skipping image %d (%s): %s", f.index, f.source, f.reason)
                self.failures.append(f)
            if batch.pixels is None:
                continue
            yield batch.indices, batch.pixels.to(self.device, non_blocking=True)


def probe_for(metric: Any) -> Callable[[int], None]:
    """A batch-size probe for a network-backed metric: ``forward`` on ``b`` blank preprocessed images."""
    shape = tuple(metric.preprocessor(torch.zeros(3, 8, 8), 0).shape)

    def probe(b: int) -> None:
        metric.forward(torch.zeros(b, *shape, device=metric.device))

    return probe


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def search_batch(fits: Callable[[int], bool], limit: int) -> int:
    """The largest ``b <= limit`` with ``fits(b)``, assuming fits is monotone: doubling, then bisection.

    Returns 0 when not even a batch of one fits.
    """
    lo, b = 0, 1
    while b <= limit and fits(b):
        lo, b = b, b * 2
    hi = min(b, limit + 1)  # the first size known not to fit (or past the limit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def auto_batch_size(
    probe: Callable[[int], None] | None,
    device: str | torch.device,
    fallback: int = 8,
    limit: int = 256,
    headroom: float = 0.9,
) -> int:
    """Largest batch for which ``probe(batch)`` runs without running out of GPU memory, times ``headroom``.

    On a device other than CUDA, or without a probe, returns ``fallback`` (nothing is run).
    """
    dev = torch.device(device)
    if dev.type != "cuda" or probe is None:
        logger.info("batch_size='auto': fixed batch %d on %s", fallback, dev)
        return fallback

    def fits(b: int) -> bool:
        try:
            probe(b)
            torch.cuda.synchronize(dev)
            return True
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors mean "too large"
            if not _is_oom(exc):
                raise
            return False
        finally:
            gc.collect()
            torch.cuda.empty_cache()

    best = search_batch(fits, limit)
    if best == 0:
        raise ConfigError(
            f"batch_size='auto': not even one image fits in the free memory of {dev}; "
            "use a smaller size, float16, or another GPU"
        )
    chosen = max(1, int(best * headroom))
    logger.info("batch_size='auto': %d fits on %s, using %d", best, dev, chosen)
    return chosen
