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

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, DiffSimError
from ..gallery.readers import GalleryInput
from ..gallery.runner import Outcome
from ..gallery.store import GalleryStore, Row
from ..images import max_pixels
from .inputs import read_dataset
from .worker import EmbedWorker, decode_batch

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


def _verbose() -> bool:
    """True when diffsim logs at INFO or below (``-v``): Ray's own logs and warnings are shown too."""
    return logging.getLogger("diffsim").getEffectiveLevel() <= logging.INFO


@contextlib.contextmanager
def quiet_ray() -> Iterator[None]:
    """Without ``-v``: Ray's loggers at ERROR and its Python warnings hidden (diffsim says what matters)."""
    if _verbose():
        yield
        return
    loggers = [logging.getLogger(n) for n in ("ray", "ray.data", "ray._private", "ray.util")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


@contextlib.contextmanager
def _stderr_to_null() -> Iterator[None]:
    """File descriptor 2 to /dev/null: the lines Ray's C++ core prints while it starts (its log files keep them)."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def connect(address: str | None) -> Any:
    """Join the Ray cluster at ``address`` (or start a local one); reuse a connection already made."""
    with quiet_ray():
        ray = require_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": _verbose()}
            if not _verbose():
                kwargs["logging_level"] = logging.ERROR
                os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # the C++ core's stderr lines
            try:
                with contextlib.nullcontext() if _verbose() else _stderr_to_null():
                    ray.init(address=address, **kwargs)
            except ConnectionError as exc:
                raise ConfigError(
                    f"cannot reach the Ray cluster at {address!r}: {exc} (start one with "
                    "`ray start --head`, or leave --address out for a local one)"
                ) from None
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - Ray's own failure: say it, in one line
                raise ray_failure("starting Ray", exc) from exc
    return ray


def _runtime(metric: Any, opts: RayOptions, batch_size: int | None) -> dict[str, Any]:
    """Settings the actors change: their device, batch size, and no in-memory feature cache."""
    names = set(metric.settings.names()) if hasattr(metric.settings, "names") else set()
    run: dict[str, Any] = {}
    if "device" in names:  # an actor sees only the GPUs Ray gave it
        run["device"] = "cuda" if opts.gpus_per_worker > 0 else "cpu"
    if "batch_size" in names:  # the build's, else the driver metric's (a runtime setting: not in the store)
        run["batch_size"] = batch_size if batch_size is not None else metric.settings.batch_size
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


def ray_failure(what: str, exc: BaseException) -> DiffSimError:
    """One line naming what failed in Ray (Ray may exit, or log its reason where we silenced it)."""
    if isinstance(exc, SystemExit):
        detail = f"Ray exited (status {exc.code!r}) without a message"
    else:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"
    return DiffSimError(
        f"{what} failed: {detail}; the shards written so far are kept (rerun to resume); "
        "rerun with -v for Ray's own log lines"
    )


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


def _outcome(batch: dict[str, np.ndarray]) -> Outcome:
    """The runner's :class:`Outcome` of one batch returned by the actor pool."""
    out = Outcome()
    for i, st in enumerate(batch["status"]):
        image_id, path = str(batch["id"][i]), str(batch["path"][i])
        if st == "embedded":
            out.rows.append(
                Row(
                    image_id,
                    path,
                    str(batch["hash"][i]),
                    str(batch["shard"][i]),
                    int(batch["row"][i]),
                    str(batch["checksum"][i]),
                )
            )
        elif st == "fail":
            out.failures.append((image_id, path, str(batch["reason"][i])))
        elif st == "skip":
            out.skipped.append(image_id)
        else:  # an embed row the actor did not embed: never expected
            raise DiffSimError(f"image {image_id} came back from the actor pool with status {st!r}")
    out.embedded = len(out.rows)
    return out


class RayEngine:
    """Distributes a build over Ray: decode tasks on CPUs, ``opts.workers`` embedding actors writing shards."""

    name = "ray"

    def __init__(self, opts: RayOptions | None = None, batch_size: int | None = None) -> None:
        self.opts = opts or RayOptions()
        self.opts.validate()
        self.batch_size = batch_size
        self.commit_every = self.opts.commit_every

    def check(self, metric: Any) -> None:
        """GPU workers need the dtype given (see :func:`check_gpu_dtype`)."""
        check_gpu_dtype(getattr(metric.settings, "dtype", ""), self.opts)

    def run(
        self,
        inp: GalleryInput,
        store: GalleryStore,
        metric: Any,
        known: Mapping[str, str],
        keep: Callable[[str], bool] | None,
    ) -> Iterator[Outcome]:
        if keep is not None:
            raise ConfigError("--engine ray spreads one build over the cluster itself: it builds no part")
        opts = self.opts
        ray = connect(opts.address)
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
        configure_context(ray)
        cpus = opts.cpus_per_worker if opts.cpus_per_worker is not None else _default_cpus(ray, opts)
        decode_kwargs = {"preprocess": metric.preprocessor, "known": ray.put(dict(known)), "max_pixels": max_pixels()}
        ds = read_dataset(inp).map_batches(decode_batch, fn_kwargs=decode_kwargs, batch_format="numpy")
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
                "runtime": _runtime(metric, opts, self.batch_size),
                "threads": max(1, int(cpus)),
            },
        )
        try:
            with quiet_ray():
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    yield _outcome(batch)
        except DiffSimError:
            raise
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a worker's diffsim error, or Ray's: one line
            err = worker_error(exc) if isinstance(exc, Exception) else None
            raise (err or ray_failure("the Ray build", exc)) from exc
