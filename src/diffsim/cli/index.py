"""`diffsim index build GALLERY --out STORE` and `diffsim index info STORE`: gallery feature stores."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, ImageError, StoreError
from .options import build_metric, diffsim_options, typed_overrides


@click.group("index")
def index() -> None:
    """Build and inspect gallery feature stores (for `diffsim retrieve` and `diffsim dedup`)."""


def _runtime(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: opts[k] for k in ("device", "batch_size") if opts.get(k) is not None}


@index.command("build")
@click.argument("gallery", nargs=-1, required=True)
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False),
              help="Store folder (created, or updated: only new or changed images are embedded).")
@diffsim_options
@click.option("--workers", type=int, default=None,
              help="DataLoader processes that decode and resize images. [default: 0 on CPU, up to 8 on CUDA]")
@click.option("--strict", is_flag=True, help="Stop at the first unreadable image (default: record and skip it).")
@click.option("--compact", type=click.Choice(["none", "fp16"]), default="none", show_default=True,
              help="fp16: store features in half precision (half the bytes; see the README for its agreement).")
@click.option("--shard-size", type=int, default=None, help="Images per shard. [default: about 256 MiB of features]")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def build(ctx: click.Context, gallery: tuple[str, ...], out: str, metric_name: str | None, workers: int | None,
          strict: bool, compact: str, shard_size: int | None, quiet: bool, **opts: Any) -> None:
    """Embed GALLERY (a folder walked recursively, a list file, or image files) into the store --out.

    Rerunning on the same gallery embeds nothing; added or changed images are embedded; an interrupted
    build resumes. An existing store keeps its metric: without metric options it is reused as built.
    """
    from ..gallery.build import build_index
    from ..gallery.search import metric_for
    from ..gallery.sources import collect
    from ..gallery.store import SETTINGS_FILE, GalleryStore

    sources = collect(gallery)  # paths first: nothing is loaded for a bad gallery
    if not len(sources):
        raise ImageError(f"no images found in {' '.join(gallery)} (extensions: png, jpg, jpeg, webp, bmp, tif, ...)")
    if shard_size is not None and shard_size < 1:
        raise click.BadParameter("must be at least 1", param_hint="--shard-size")
    from ..registry import metric_info

    if metric_name is not None and getattr(metric_info(metric_name).metric_class, "votes", False):
        raise ConfigError(f"metric {metric_name!r} votes between members and has no per-image features to store; "
                          "index each member metric in its own store")
    existing = GalleryStore.open(out) if (Path(out) / SETTINGS_FILE).exists() else None
    if existing is not None and len(existing) and existing.root != sources.root:
        raise StoreError(f"store {out} holds images of {existing.root or 'explicit paths'}, not of "
                         f"{sources.root or 'explicit paths'}; use another --out")
    typed = set(typed_overrides(ctx, opts)) - {"device", "batch_size"}
    if existing is not None and metric_name is None and not typed and not opts.get("set_items"):
        metric = metric_for(existing, **_runtime(opts))
    else:
        metric = build_metric(ctx, metric_name, "diffsim-s", opts)
    store = GalleryStore.open_or_create(out, metric, compact, root=sources.root)
    report = build_index(sources, store, metric, batch_size=opts.get("batch_size"), num_workers=workers,
                         strict=strict, progress=not quiet, shard_size=shard_size)
    click.echo(f"{store.folder}: {len(store)} images ({store.nbytes() / 1e6:.1f} MB); this build embedded "
               f"{report.embedded} ({report.images_per_second:.1f} images/s), {report.skipped} already stored"
               + (f", {report.recovered} recovered" if report.recovered else "")
               + (f", {len(report.failures)} unreadable (see {Path(out) / 'errors.json'})" if report.failures else ""))


@index.command("info")
@click.argument("store", type=str)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def info(store: str, as_json: bool) -> None:
    """Show what a store holds: metric, images, shards, bytes, unreadable images."""
    from ..gallery.store import GalleryStore

    st = GalleryStore.open(store)
    n = len(st)
    rows = st.rows()
    doc = {"store": str(st.folder), "metric": st.metric_name, "images": n, "shards": len({r["shard"] for r in rows}),
           "bytes": st.nbytes(), "bytes_per_image": st.nbytes() / n if n else None, "compact": st.compact,
           "root": st.root, "errors": len(st.errors()), "features": st.feature_config}
    if as_json:
        click.echo(json.dumps(doc))
        return
    for k, v in doc.items():
        if k != "features":
            click.echo(f"{k}: {v}")
