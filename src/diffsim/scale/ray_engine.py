"""Build a gallery store with Ray Data: read and decode on CPU tasks, embed on an actor pool.

The driver lists the gallery, creates or opens the store and writes its table; each actor (one model,
``gpus_per_worker`` GPUs) embeds a batch of ``shard_size`` images and writes it as one shard, returning
only ids, hashes, the shard name and the pooled vectors. The result is the store the local engine
builds (same ids, same features up to float tolerance, other shard boundaries).

Resume and faults: images stored with the same content hash are skipped, shards written but never
committed are recovered (:meth:`GalleryStore.recover`), and the table is committed as results arrive.
Ray Data runs the actor pool with ``max_restarts=-1`` and ``max_task_retries=-1`` (its defaults): a
killed actor is restarted and its batch retried; the batch's shard name is fixed by its content, so a
retry reuses a shard its first attempt wrote and no row is lost or doubled.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, DiffSimError, ImageError
from ..gallery.build import BuildReport
from ..gallery.store import GalleryStore, Row
from .inputs import RayInput, read_dataset
from .worker import EXIT_ONCE_ENV, EmbedWorker, decode_batch

logger = logging.getLogger(__name__)

RAY_EXTRA = 'the Ray engine needs Ray Data: pip install "diffsim-metric[ray]" (or "ray[data]")'


def require_ray() -> Any:
    """Import ``ray`` (and ``ray.data``) or raise a :class:`ConfigError` naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"{RAY_EXTRA} ({exc})") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How the Ray engine runs (none of these change the features)."""

    address: str | None = None  # None: the cluster in RAY_ADDRESS, else a local one; "auto": a running one
    workers: int = 1  # embedding actors (one model each)
    gpus_per_worker: float = 0.0
    cpus_per_worker: float | None = None  # None: 1, or less if the actors would leave no CPU for decoding
    shard_size: int = 64  # images per actor batch = per shard (their pixels pass through the object store)
    commit_every: float = 30.0  # seconds between table commits

    def validate(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1; got {self.workers}")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"--gpus-per-worker must be >= 0; got {self.gpus_per_worker}")
        if self.cpus_per_worker is not None and self.cpus_per_worker < 0:
            raise ConfigError(f"cpus per worker must be >= 0; got {self.cpus_per_worker}")
        if self.shard_size < 1:
            raise ConfigError(f"--shard-size must be at least 1; got {self.shard_size}")


def connect(address: str | None) -> Any:
    """Join the Ray cluster at ``address`` (or start a local one); reuse a connection already made."""
    ray = require_ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise ConfigError(
                f"cannot reach the Ray cluster at {address!r}: {exc} (start one with "
                "`ray start --head`, or leave --address out for a local one)"
            ) from None
    return ray


def _runtime(metric: Any, opts: RayOptions, batch_size: int | None) -> dict[str, Any]:
    """Settings the actors change: their device, batch size, and no in-memory feature cache."""
    names = set(metric.settings.names()) if hasattr(metric.settings, "names") else set()
    run: dict[str, Any] = {}
    if "device" in names:  # an actor sees only the GPUs Ray gave it
        run["device"] = "cuda" if opts.gpus_per_worker > 0 else "cpu"
    if "batch_size" in names and batch_size is not None:
        run["batch_size"] = batch_size
    if "cache_bytes" in names:
        run["cache_bytes"] = 0
    if "cache_dir" in names:
        run["cache_dir"] = None
    return run


def check_gpu_dtype(dtype: Any, opts: RayOptions) -> None:
    """GPU workers need an explicit dtype: their default (float16) is not the CPU driver's (float32)."""
    if opts.gpus_per_worker > 0 and dtype is None:
        raise ConfigError(
            "with --gpus-per-worker, give --dtype (float16 or float32): the workers' default on a GPU "
            "(float16) would differ from the driver's on a CPU, and the store holds one dtype"
        )


def worker_error(exc: BaseException) -> DiffSimError | None:
    """The diffsim error (a missing model, another store's settings, ...) behind a Ray worker's failure, as
    diffsim's own exception class with its one-line message; None when the failure is not one.

    Needs ``DataContext.raise_original_map_exception`` (set by :func:`configure_context`)."""
    from .. import errors

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(e, DiffSimError) or isinstance(cause, DiffSimError):
            orig = cause if isinstance(cause, DiffSimError) else e
            cls = next(c for c in type(orig).__mro__ if c.__module__ == errors.__name__)
            lines = str(orig.args[0] if orig.args else orig).strip().splitlines()
            return cls(f"on a Ray worker: {lines[0] if lines else cls.__name__}")
        e = e.__cause__ or cause
    return None


def configure_context(ray: Any) -> None:
    """Ray Data settings of a build: no progress bars of its own, a worker's own exception re-raised."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    if hasattr(ctx, "raise_original_map_exception"):
        ctx.raise_original_map_exception = True


def _default_cpus(ray: Any, opts: RayOptions) -> float:
    """CPUs per actor: 1, or less where the actors would take every CPU and leave none for decoding."""
    total = float(ray.cluster_resources().get("CPU", 0.0))
    if opts.workers * 1.0 <= total - 1.0 or total <= 0:
        return 1.0
    cpus = max(0.1, (total - 1.0) / opts.workers) if total > 1 else 0.1
    logger.info("%d embedding actors on %g CPUs: %.2g CPU each, the rest left for decoding", opts.workers, total, cpus)
    return round(cpus, 2)


def _rows(batch: dict[str, np.ndarray]) -> tuple[list[Row], list[tuple[str, str]], int]:
    """(table rows of the embedded images, failures, skipped count) of one returned batch."""
    rows, failures, skipped = [], [], 0
    for i, st in enumerate(batch["status"]):
        if st == "embedded":
            rows.append(
                Row(
                    str(batch["id"][i]),
                    str(batch["path"][i]),
                    str(batch["hash"][i]),
                    str(batch["shard"][i]),
                    int(batch["row"][i]),
                    str(batch["checksum"][i]),
                    np.frombuffer(batch["pool"][i], dtype=np.float32).copy(),
                )
            )
        elif st == "fail":
            failures.append((str(batch["path"][i]), str(batch["reason"][i])))
        elif st == "skip":
            skipped += 1
        else:  # an embed row the actor did not embed: never expected
            raise DiffSimError(f"image {batch['id'][i]} came back from the actor pool with status {st!r}")
    return rows, failures, skipped


def build_index_ray(
    inp: RayInput,
    store: GalleryStore,
    metric: Any,
    opts: RayOptions | None = None,
    batch_size: int | None = None,
    strict: bool = False,
    progress: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> BuildReport:
    """Embed the images of ``inp`` that ``store`` lacks (or that changed) on a Ray actor pool.

    ``metric``: the store's metric (checked here; each actor builds its own from the store's settings);
    ``batch_size``: images per network pass in an actor (default: the metric's); ``on_batch(embedded)``
    is called as each batch's results arrive.
    """
    opts = opts or RayOptions()
    opts.validate()
    ray = connect(opts.address)
    t0 = time.perf_counter()
    store.check_metric(metric)
    check_gpu_dtype(store.metric_settings.get("dtype", ""), opts)
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    if opts.gpus_per_worker > gpus:  # Ray would wait for them for ever
        raise ConfigError(
            f"--gpus-per-worker {opts.gpus_per_worker:g} but the Ray cluster has {gpus:g} GPU(s); "
            "start GPU nodes first (or leave the option out to embed on CPUs)"
        )
    if opts.gpus_per_worker * opts.workers > gpus:
        logger.warning(
            "%d workers x %g GPUs > the cluster's %g GPUs: only some actors will start",
            opts.workers,
            opts.gpus_per_worker,
            gpus,
        )
    report = BuildReport(total=inp.total or 0)
    report.recovered = store.recover()
    known = store.hashes()
    configure_context(ray)
    cpus = opts.cpus_per_worker if opts.cpus_per_worker is not None else _default_cpus(ray, opts)
    ds = read_dataset(inp).map_batches(
        decode_batch, fn_kwargs={"preprocess": metric.preprocessor, "known": ray.put(known)}, batch_format="numpy"
    )
    ds = ds.map_batches(
        EmbedWorker,
        batch_size=opts.shard_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=opts.workers),
        num_gpus=opts.gpus_per_worker or None,
        num_cpus=cpus,
        fn_constructor_kwargs={
            "store_dir": str(store.folder.resolve()),
            "metric_name": store.metric_name,
            "settings": store.metric_settings,
            "runtime": _runtime(metric, opts, batch_size),
            "exit_once": os.environ.get(EXIT_ONCE_ENV) or None,
        },
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=inp.total, unit="img", desc="embedding (ray)", dynamic_ncols=True)
    seen: set[str] = set()
    shards: set[str] = set()
    last = time.monotonic()
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            rows, failures, skipped = _rows(batch)
            if strict and failures:
                raise ImageError(failures[0][1])
            for _path, reason in failures:
                logger.warning("skipping unreadable image: %s", reason)
            doubled = [r.id for r in rows if r.id in seen]
            if doubled:  # Ray gave a batch's results twice: keep the first (same content)
                logger.warning("%d image(s) came back twice (a retried batch); kept once", len(doubled))
                rows = [r for r in rows if r.id not in seen]
            seen.update(r.id for r in rows)
            store.add_rows(rows)
            report.embedded += len(rows)
            report.skipped += skipped
            report.failures += failures
            new_shards = [s for s in dict.fromkeys(r.shard for r in rows) if s not in shards]
            shards.update(new_shards)
            report.shards += new_shards
            if bar is not None:
                bar.update(len(rows) + skipped + len(failures))
            if on_batch is not None:
                on_batch(report.embedded)
            if time.monotonic() - last >= opts.commit_every:
                store.commit()
                last = time.monotonic()
    except Exception as exc:  # noqa: BLE001 - a worker's diffsim error becomes one line
        err = worker_error(exc)
        if err is None or err is exc:
            raise
        raise err from exc
    finally:
        if bar is not None:
            bar.close()
        store.commit()
    store.set_errors(report.failures)
    report.total = report.total or report.embedded + report.skipped + len(report.failures)
    report.seconds = time.perf_counter() - t0
    logger.info(
        "built %s with Ray (%d workers): %d embedded, %d already stored, %d recovered, %d unreadable in %.1f s",
        store.folder,
        opts.workers,
        report.embedded,
        report.skipped,
        report.recovered,
        len(report.failures),
        report.seconds,
    )
    return report
