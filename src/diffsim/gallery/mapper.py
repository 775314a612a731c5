"""The mapper of a gallery build: a batch of pixels -> (features, pooled vectors), on the CPU.

One :class:`Mapper` per process that embeds (the local runner, each Ray actor): the metric runs with the
build's batch size and without its in-memory feature cache (which would grow with the gallery), and
with a fixed number of torch threads (:func:`threads_for`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ConfigError
from ..features import Features

logger = logging.getLogger(__name__)


def stream_metric(metric: Any, batch_size: int | None) -> Any:
    """The metric with the given batch size and no in-memory feature cache (which would grow with the gallery)."""
    changes: dict[str, Any] = {}
    s = metric.settings
    if getattr(s, "cache_bytes", 0):
        changes["cache_bytes"] = 0
    if batch_size is not None and getattr(s, "batch_size", batch_size) != batch_size:
        changes["batch_size"] = batch_size
    return metric.with_settings(**changes) if changes else metric


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def idle_cores() -> int:
    """Cores not busy with other work now: the usable cores less the 1-minute load average (rounded)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return int(usable_cores() - load + 0.5)


def threads_for(threads: int | None, decode_workers: int) -> int:
    """Torch threads of the embedding process: ``threads`` if given, else torch's default (the cores, or
    ``OMP_NUM_THREADS``) capped by the cores the decode workers leave and by the cores idle now, at least 1.

    An OpenMP team larger than the cores it gets spins and waits: on a 2-core machine busy with other
    work, a gallery build ran 14x slower with 2 threads than with 1 (issue 18)."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be a positive integer; got {threads!r}")
        return threads
    free = usable_cores() - max(0, decode_workers)
    return max(1, min(torch.get_num_threads(), free, idle_cores()))


class Mapper:
    """Embeds preprocessed pixels with ``metric``; returns features and pooled vectors on the CPU."""

    def __init__(self, metric: Any, batch_size: int | None = None) -> None:
        self.metric = stream_metric(metric, batch_size)

    @property
    def batch_size(self) -> int:
        return int(getattr(self.metric.settings, "batch_size", 8))

    @property
    def device(self) -> torch.device:
        return self.metric.device

    def __call__(self, pixels: torch.Tensor, ids: Sequence[str]) -> tuple[Features, torch.Tensor]:
        m = self.metric
        feats = m.embed_pixels(pixels.to(m.device), list(ids)).to("cpu")
        return feats, m.pool(feats).cpu()
