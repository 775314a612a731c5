"""Options and helpers shared by `diffsim bench`, `consistency` and `sweep`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..datasets import dataset_spec, list_datasets, load_dataset
from ..datasets.base import TripletSet, VideoSet
from ..errors import ConfigError


def dataset_options(f: Callable) -> Callable:
    opts = [
        click.argument("name", type=click.Choice(list_datasets())),
        click.option(
            "--root",
            "-r",
            type=click.Path(),
            default=None,
            help="Dataset folder as distributed (layouts: docs/benchmarks.md).  Optional with --triplets.",
        ),
        click.option(
            "--protocol",
            default="paper",
            show_default=True,
            help="'paper' (supplementary §6) or 'script' (the authors' code) where they differ.",
        ),
        click.option(
            "--option",
            "-o",
            "ds_options",
            multiple=True,
            metavar="KEY=VALUE",
            help="Dataset option, e.g. -o split=val, -o levels=2,3, -o n=2000 (repeatable).",
        ),
        click.option(
            "--triplets",
            "triplets_file",
            type=click.Path(dir_okay=False),
            default=None,
            help="Evaluate exactly the triplets of this manifest (manifest.json of an earlier run).",
        ),
        click.option(
            "--out",
            "-O",
            "out_dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Output folder [default: runs/NAME-METRIC-PROTOCOL].",
        ),
        click.option("--strict", is_flag=True, help="Stop at the first missing/corrupt image (default: record it)."),
        click.option(
            "--strict-ties",
            is_flag=True,
            help="Count a tie as wrong, as the authors' scripts do (default: a tie counts 0.5).",
        ),
        click.option(
            "--no-dataset-prompts",
            is_flag=True,
            help="Do not pass per-triplet prompts (NIGHTS, CUTE); use the metric's own prompt.",
        ),
        click.option("--overwrite", is_flag=True, help="Discard a previous run in the output folder."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def parse_kv(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"dataset option must be KEY=VALUE; got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def bench_metric(ctx: click.Context, name: str | None, dataset: str, opts: dict[str, Any]):
    """The metric for a benchmark: --metric (default: the dataset's paper preset) with the typed options."""
    from .options import build_metric

    return build_metric(ctx, name, dataset_spec(dataset).default_metric, opts)


def load_set(
    name: str, root: str | None, protocol: str, ds_options: tuple[str, ...], seed: int, triplets_file: str | None
) -> TripletSet | VideoSet:
    if triplets_file:
        from ..bench.manifest import load_manifest

        ts = load_manifest(triplets_file, root)
        if ts.dataset != name:
            raise ConfigError(f"manifest {triplets_file} holds {ts.dataset!r} triplets, not {name!r}")
        return ts
    if root is None:
        raise click.UsageError("--root is required (or --triplets FILE)")
    return load_dataset(name, root, protocol, seed, parse_kv(ds_options))


def default_out(name: str, metric: str, protocol: str, kind: str = "") -> str:
    return f"runs/{name}-{metric}-{protocol}{kind}"
