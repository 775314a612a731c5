"""Options and helpers for scale-out builds: ``--engine ray`` (Ray Data) and ``--num-shards`` parts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .numbers import COUNT, FINITE_NON_NEGATIVE, NON_NEGATIVE


def engine_options(f: Callable) -> Callable:
    """--engine local|ray and the Ray options (--workers is the command's own: actors with --engine ray)."""
    opts = [
        click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="local: this process; ray: Ray Data (decode on CPU tasks, embed on an actor pool; "
            'needs pip install "diffsim-metric[ray]").',
        ),
        click.option(
            "--address",
            default=None,
            help="Ray cluster: 'auto' (a running one), ray://HOST:10001 or HOST:6379. "
            "[default: RAY_ADDRESS, else a local Ray]",
        ),
        click.option(
            "--gpus-per-worker",
            type=FINITE_NON_NEGATIVE,
            default=0.0,
            show_default=True,
            help="GPUs per Ray embedding actor (0.5: two actors share a GPU).",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def input_options(f: Callable) -> Callable:
    """--input and the parquet column names (galleries the Ray engine reads without a local listing)."""
    opts = [
        click.option(
            "--input",
            "ray_input",
            type=click.Choice(["auto", "files", "parquet", "webdataset"]),
            default="auto",
            show_default=True,
            help="GALLERY kind (every engine reads each): image files (folder, list file, paths), parquet "
            "files with an image-bytes column, or webdataset .tar shards (auto: by extension).",
        ),
        click.option("--id-column", default="id", show_default=True, help="Parquet: the column of image ids."),
        click.option(
            "--image-column",
            default="image",
            show_default=True,
            help="Parquet: the column of encoded image bytes (or Hugging Face image structs).",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def shard_options(f: Callable) -> Callable:
    """--num-shards K --shard-index I (or RANK/WORLD_SIZE, SLURM_PROCID/SLURM_NTASKS)."""
    opts = [
        click.option(
            "--num-shards",
            type=COUNT,
            default=None,
            help="Build one of K parts of the gallery (join them with `diffsim index merge`). "
            "[default: WORLD_SIZE (torchrun) or SLURM_NTASKS, else 1]",
        ),
        click.option(
            "--shard-index",
            type=NON_NEGATIVE,
            default=None,
            help="Which part (0..K-1). [default: RANK (torchrun) or SLURM_PROCID]",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def ray_options_from(opts: dict[str, Any], workers: int | None, shard_size: int | None) -> Any:
    """The :class:`~diffsim.scale.ray_engine.RayOptions` for the typed options."""
    from ..scale.ray_engine import RayOptions

    kw: dict[str, Any] = {
        "address": opts.get("address"),
        "workers": workers or 1,
        "gpus_per_worker": opts.get("gpus_per_worker") or 0.0,
    }
    if shard_size is not None:
        kw["shard_size"] = shard_size
    return RayOptions(**kw)
