"""`diffsim index build GALLERY --out STORE` and `diffsim index info STORE`: gallery feature stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, StoreError
from .merge import merge
from .numbers import COUNT, NON_NEGATIVE, IntBounds
from .options import build_metric, diffsim_options, typed_overrides
from .scale_options import engine_options, input_options, ray_options_from, shard_options
from .state import STATE


@click.group("index")
def index() -> None:
    """Build and inspect gallery feature stores (for `diffsim retrieve` and `diffsim dedup`)."""


def _runtime(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: opts[k] for k in ("device", "batch_size") if opts.get(k) is not None}


def _compact_mode(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--compact``: checked while parsing (one ``error:`` line, exit 2)."""
    from ..gallery.compact import parse_mode

    return None if value is None else parse_mode(value).name


@index.command("build")
@click.argument("gallery", nargs=-1, required=True)
@click.option(
    "--out",
    "-o",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    help="Store folder (created, or updated: only new or changed images are embedded).",
)
@diffsim_options
@click.option(
    "--workers",
    type=NON_NEGATIVE,
    default=None,
    help="DataLoader processes that decode and resize images. [default: 0 on CPU, up to 8 on CUDA] "
    "With --engine ray: embedding actors, one model each. [default: 1]",
)
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image (default: record and skip it).")
@click.option(
    "--compact",
    callback=_compact_mode,
    default=None,
    help="fp16: features in half precision (half the bytes); int8: per-channel quantised Q/K/V (a quarter); "
    "pcaR-int8 / pcaR-poolP-int8 (e.g. pca64-pool2-int8): R principal components of each Q/K/V's channels, "
    "fitted on the first 64 images, tokens averaged in PxP cells, then int8. Measure a mode on your own "
    "features with `diffsim index eval-compact` first; see docs/scale.md. A store keeps one mode. "
    "[default: the store's, or none]",
)
@click.option(
    "--shard-size",
    type=COUNT,
    default=None,
    help="Images per shard. [default: about 256 MiB of features; --engine ray: 64, one actor batch]",
)
@click.option(
    "--threads",
    type=COUNT,
    default=None,
    help="Torch threads of the embedding process (decode workers use one each). "
    "[default: the cores the --workers leave, at most torch's default]",
)
@click.option(
    "--ann",
    "ann_kind",
    type=click.Choice(["auto", "flat", "ivf", "hnsw", "ivfpq", "pcaivfpq", "none"]),
    default=None,
    help="Kind of the store's persisted ANN index over pooled vectors (for --prefilter and dedup): auto picks "
    "flat below 100k images, hnsw below 1M, pcaivfpq (PCA256,IVF,PQ32, re-ranked by SQ8 codes) above; "
    "none: no index now (built when first needed). "
    "[default: the store's kind, or auto; none when faiss is not installed]",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@engine_options
@input_options
@shard_options
@click.pass_context
def build(
    ctx: click.Context,
    gallery: tuple[str, ...],
    out: str,
    metric_name: str | None,
    workers: int | None,
    strict: bool,
    compact: str | None,
    shard_size: int | None,
    threads: int | None,
    ann_kind: str | None,
    quiet: bool,
    num_shards: int | None,
    shard_index: int | None,
    **opts: Any,
) -> None:
    """Embed GALLERY (a folder walked recursively, a list file, image files, parquet files with an
    image-bytes column, or webdataset tar shards) into the store --out.

    Rerunning on the same gallery embeds nothing; added or changed images are embedded; images no longer
    in a folder, list file or shard set are dropped from the store; an interrupted build resumes. An
    existing store keeps its metric: without metric options it is reused as built. Every input works
    with every engine. With --num-shards K (or under torchrun / srun), this process builds one part, in
    OUT.partIIIII-of-KKKKK. Two builds of one store take turns (the second waits, then embeds what is left).
    """
    from ..gallery.lock import build_lock
    from ..gallery.readers import open_gallery
    from ..gallery.search import metric_for
    from ..gallery.store import SETTINGS_FILE, GalleryStore
    from ..scale.partition import bind_local_gpu, part_path, resolve_partition

    STATE["command"] = "index build"  # Ctrl-C says that a rerun resumes
    engine = opts.pop("engine")
    part = resolve_partition(num_shards, shard_index)
    if engine == "ray" and part is not None:
        raise click.UsageError(
            "--engine ray spreads one build over the cluster itself: drop --num-shards (and RANK/WORLD_SIZE)"
        )
    out = part_path(out, part)
    if part is not None:
        bind_local_gpu()  # torchrun: rank r of a machine uses its GPU r
    if engine == "ray":  # before anything is read or loaded
        from ..scale.ray_engine import require_ray

        require_ray()
    inp = open_gallery(gallery, opts["ray_input"], None, opts["id_column"], opts["image_column"])
    root = inp.root
    if shard_size is not None and shard_size < 1:
        raise click.BadParameter("must be at least 1", param_hint="--shard-size")
    from ..registry import metric_info

    if metric_name is not None and getattr(metric_info(metric_name).metric_class, "votes", False):
        raise ConfigError(
            f"metric {metric_name!r} votes between members and has no per-image features to store; "
            "index each member metric in its own store"
        )
    existing = GalleryStore.open(out) if (Path(out) / SETTINGS_FILE).exists() else None
    if existing is not None and len(existing) and existing.root != root:
        raise StoreError(
            f"store {out} holds images of {existing.root or 'explicit paths'}, not of "
            f"{root or 'explicit paths'}; use another --out"
        )
    typed = set(typed_overrides(ctx, opts)) - {"device", "batch_size"}
    if existing is not None and metric_name is None and not typed and not opts.get("set_items"):
        metric = metric_for(existing, **_runtime(opts))
    else:
        metric = build_metric(ctx, metric_name, "diffsim-s", opts)
    if engine == "ray":
        from ..scale.ray_engine import RayEngine

        eng: Any = RayEngine(ray_options_from(opts, workers, shard_size), opts.get("batch_size"))
    else:
        from ..gallery.runner import LocalEngine

        eng = LocalEngine(opts.get("batch_size"), workers, shard_size, threads=threads)
    from ..gallery.runner import run_build

    # run_build checks the metric (and the engine's needs) before it creates the store, and takes its lock
    report = run_build(
        inp, out, metric, eng, compact=compact, strict=strict, progress=not quiet, keep=part.holds if part else None
    )
    from ..gallery.ann import update_index

    with build_lock(out):
        _report(report.store, out, report)
        line = update_index(report.store, ann_kind)
        if line is not None:
            click.echo(line)


def _report(store: Any, out: str, report: Any) -> None:
    click.echo(
        f"{store.folder}: {len(store)} images ({store.nbytes() / 1e6:.1f} MB); this build embedded "
        f"{report.embedded} ({report.images_per_second:.1f} images/s), {report.skipped} already stored"
        + (f", {report.recovered} recovered" if report.recovered else "")
        + (f", {report.damaged} re-embedded (their shard no longer matched its checksum)" if report.damaged else "")
        + (f", {report.removed} removed (no longer in the gallery)" if report.removed else "")
        + (f", {len(report.failures)} unreadable (see {Path(out) / 'errors.json'})" if report.failures else "")
    )


def _ann_info(st: Any) -> Any:
    from ..gallery.ann import read_info

    info = read_info(st)
    return None if info is None else {k: info.to_json()[k] for k in ("kind", "n", "bytes", "seconds")}


index.add_command(merge)


@index.command("info")
@click.argument("store", type=str)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def info(store: str, as_json: bool) -> None:
    """Show what a store holds: metric, images, shards, bytes, unreadable images."""
    from ..gallery.store import GalleryStore

    st = GalleryStore.open(store)
    n = len(st)
    rows = st.rows()
    changed = st.changed_shards()
    if changed:
        click.echo(
            f"warning: {len(changed)} shard file(s) changed or went missing since the table was written "
            f"({', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''}); check them with "
            f"`diffsim index verify {store}`",
            err=True,
        )
    orphans = st.unindexed_shards()
    if orphans:
        click.echo(
            f"warning: {len(orphans)} shard file(s) in {st.shard_dir} are not in the table; "
            f"`diffsim index build GALLERY --out {store}` (or `diffsim retrieve`) recovers them",
            err=True,
        )
    doc = {
        "store": str(st.folder),
        "metric": st.metric_name,
        "images": n,
        "shards": len({r["shard"] for r in rows}),
        "bytes": st.nbytes(),
        "bytes_per_image": st.nbytes() / n if n else None,
        "compact": st.compact,
        "root": st.root,
        "ann": _ann_info(st),
        "errors": len(st.errors()),
        "features": st.feature_config,
    }
    if as_json:
        click.echo(json.dumps(doc))
        return
    for k, v in doc.items():
        if k != "features":
            click.echo(f"{k}: {v}")


@index.command("verify")
@click.argument("store", type=str)
@click.option(
    "--repair",
    is_flag=True,
    help="Drop the rows of damaged shards (and delete the files): the next `index build` embeds those images again.",
)
def verify(store: str, repair: bool) -> None:
    """Read every shard of STORE and check it against the checksum in the table."""
    from ..gallery.store import GalleryStore

    st = GalleryStore.open(store)
    shards = len({r["shard"] for r in st.rows()})
    bad = st.verify()
    if not bad:
        click.echo(f"{st.folder}: {shards} shard(s), {len(st)} images: every shard matches its checksum")
        return
    if not repair:
        names = ", ".join(sorted(bad)[:3]) + (" ..." if len(bad) > 3 else "")
        raise StoreError(
            f"{len(bad)} of {shards} shard(s) of {st.folder} are damaged ({names}: "
            f"{next(iter(bad.values())).split(': ', 1)[-1].split(';')[0]}); `diffsim index verify {store} --repair` "
            "drops their rows, then `diffsim index build` embeds those images again"
        )
    dropped = st.drop_shards(bad)
    click.echo(
        f"{st.folder}: dropped {dropped} image(s) of {len(bad)} damaged shard(s); "
        "`diffsim index build GALLERY --out STORE` embeds them again"
    )


@index.command("eval-compact")
@click.argument("store", type=str)
@click.option(
    "--sample",
    "-n",
    type=IntBounds(2, what="an integer of at least 2"),
    required=True,
    help="Stored images to measure on (spread over the store); each is a query against the others.",
)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    callback=lambda ctx, param, value: tuple(_compact_mode(ctx, param, v) for v in value),
    help="A compact mode to measure (repeat for several). "
    "[default: fp16, int8, pca64-int8, pca64-pool2-int8, pca16-pool2-int8]",
)
@click.option("--top-k", "-k", "k", type=COUNT, default=10, show_default=True, help="Top-k lists compared.")
@click.option(
    "--queries",
    type=COUNT,
    default=None,
    help="Only this many of the sampled images are queries (each costs N comparisons per mode). [default: all]",
)
@click.option("--device", default=None, help="cpu, cuda, cuda:N or mps. [default: best available]")
def eval_compact(
    store: str, sample: int, modes: tuple[str, ...], k: int, queries: int | None, device: str | None
) -> None:
    """Measure compact modes on N images of STORE (built with --compact none or fp16): bytes per image and
    agreement of each mode's top-k with the exact ranking. A pca mode is fitted on the same N images."""
    from ..gallery.compact_eval import DEFAULT_MODES, check_reference, evaluate_compact, table
    from ..gallery.search import metric_for
    from ..gallery.store import GalleryStore

    st = GalleryStore.open(store)
    check_reference(st, sample)  # before the model loads
    if queries is not None and queries > sample:
        raise ConfigError(f"--queries {queries} is larger than --sample {sample}")
    metric = metric_for(st, **({"device": device} if device else {}))
    results = evaluate_compact(st, metric, sample, modes or DEFAULT_MODES, k, queries)
    click.echo(table(results, sample, k, queries))
