"""`diffsim retrieve QUERY [QUERY ...] --index STORE`: the closest gallery images to each query."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ImageError, StoreError
from .numbers import COUNT, COUNT_OR_AUTO, FRACTION, NON_NEGATIVE

FIELDS = ["query", "rank", "path", "score", "metric", "index", "file"]


def open_stores(paths: tuple[str, ...]) -> list[Any]:
    """Every store opened (settings read, table present and not empty) before any model is loaded."""
    from ..gallery.store import GalleryStore

    stores = []
    for p in paths:
        st = GalleryStore.open(p)
        if len(st) == 0 and st.unindexed_shards():  # the table was lost (or never committed): the shards hold it
            n = st.recover()
            click.echo(f"warning: {p}: the table did not list its shards; recovered {n} image(s) from them", err=True)
        if len(st) == 0:
            raise StoreError(f"store {p} is empty: no image to search (see {Path(p) / 'errors.json'})")
        stores.append(st)
    return stores


@click.command()
@click.argument("queries", nargs=-1)
@click.option(
    "--index",
    "stores",
    multiple=True,
    required=True,
    help="Store folder from `diffsim index build` (repeat: one grid row per store's metric).",
)
@click.option("--top-k", "-k", "top_k", type=COUNT, default=10, show_default=True)
@click.option(
    "--prefilter",
    type=COUNT_OR_AUTO,
    default=None,
    help="N, or auto: the store's ANN index proposes N candidates per query from the pooled vectors and exact "
    "scores re-rank them; auto grows N until the recall@k measured on sample queries reaches --target-recall. "
    'The estimated recall is reported on stderr (and as a first {"meta": ...} line with --json). '
    "Needs diffsim-metric[faiss].",
)
@click.option(
    "--target-recall",
    type=FRACTION,
    default=0.95,
    show_default=True,
    help="With --prefilter auto: the recall@k to reach.",
)
@click.option(
    "--recall-sample",
    type=NON_NEGATIVE,
    default=8,
    show_default=True,
    help="With --prefilter: queries also scored against every stored image to estimate recall (0: no estimate).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per result line (query, rank, path, score, ...)."
)
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.option("--grid", type=click.Path(dir_okay=False), default=None, help="Write a PNG: each query, then its top-k.")
@click.option(
    "--eval",
    "do_eval",
    is_flag=True,
    help="Leave-one-out recall@1/5/10 and mAP of the store itself (one folder per class).",
)
@click.option("--device", default=None, help="cpu, cuda, cuda:N or mps. [default: best available]")
@click.option("--batch-size", type=COUNT, default=None, help="Query images per network pass.")
def retrieve(
    queries: tuple[str, ...],
    stores: tuple[str, ...],
    top_k: int,
    prefilter: int | str | None,
    target_recall: float,
    recall_sample: int,
    as_json: bool,
    as_csv: bool,
    grid: str | None,
    do_eval: bool,
    device: str | None,
    batch_size: int | None,
) -> None:
    """Rank the images of each --index store by their score against each QUERY (rank 1 = most similar)."""
    from ..gallery.search import Gallery, metric_for, require_faiss

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if not queries and not do_eval:
        raise click.UsageError("give at least one QUERY image (or --eval)")
    for q in queries:
        if not Path(q).is_file():
            raise ImageError(f"query image not found: {q}")
    n_pre = _prefilter(prefilter, top_k)
    opened = open_stores(stores)
    if n_pre is not None:
        require_faiss()
    runtime = {k: v for k, v in (("device", device), ("batch_size", batch_size)) if v is not None}
    rows, grid_rows = [], []
    for path, st in zip(stores, opened, strict=False):
        gallery = Gallery(st, metric_for(st, **runtime))
        if do_eval:
            from ..gallery.evaluate import evaluate

            res = evaluate(gallery)
            if as_json:
                click.echo(json.dumps({"index": path, "metric": st.metric_name, **res}))
            else:
                click.echo(
                    f"{path} ({st.metric_name}): "
                    + ", ".join(
                        f"{k} {v:.4f}" if isinstance(v, float) and k not in ("queries", "classes") else f"{k} {int(v)}"
                        for k, v in res.items()
                    )
                )
        if not queries:
            continue
        hits = gallery.search(
            list(queries),
            k=top_k,
            prefilter=n_pre,
            names=list(queries),
            target_recall=target_recall,
            recall_sample=recall_sample,
        )
        if gallery.last_prefilter is not None:
            rep = gallery.last_prefilter
            click.echo(f"{path}: {rep.line()}", err=True)
            if as_json:
                click.echo(json.dumps({"meta": {"index": path, "metric": st.metric_name, **rep.__dict__}}))
        for q, row in zip(queries, hits, strict=False):
            for h in row:
                rows.append(
                    {
                        "query": q,
                        "rank": h.rank,
                        "path": h.path,
                        "score": h.score,
                        "metric": st.metric_name,
                        "index": path,
                        "file": h.file,
                    }
                )
            grid_rows.append((q, st.metric_name, row))
    _emit(rows, as_json, as_csv)
    if grid and grid_rows:
        from ..gallery.grid import ResultRow, retrieval_grid

        order = sorted(
            range(len(grid_rows)), key=lambda i: queries.index(grid_rows[i][0])
        )  # a query's metrics together
        out = retrieval_grid(
            [
                ResultRow(
                    grid_rows[i][0],
                    grid_rows[i][0],
                    grid_rows[i][1],
                    [(h.file, h.path, h.score) for h in grid_rows[i][2]],
                )
                for i in order
            ],
            grid,
        )
        click.echo(f"wrote {out}", err=True)


def _prefilter(value: int | str | None, top_k: int) -> int | str | None:
    """--prefilter: None, "auto" or an integer at least --top-k."""
    if value is None or value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter(
            f"expected a number of candidates or auto; got {value!r}", param_hint="--prefilter"
        ) from None
    if n < top_k:
        raise click.BadParameter(f"must be at least --top-k ({top_k}); got {n}", param_hint="--prefilter")
    return n


def _emit(rows: list[dict[str, Any]], as_json: bool, as_csv: bool) -> None:
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
    elif as_csv:
        w = csv.DictWriter(sys.stdout, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    else:
        multi = len({r["index"] for r in rows}) > 1
        last = None
        for r in rows:
            if (r["query"], r["index"]) != last:
                last = (r["query"], r["index"])
                click.echo(f"{r['query']}" + (f"  [{r['metric']}: {r['index']}]" if multi else ""))
            click.echo(f"  {r['rank']:>3}  {r['score']:.6f}  {r['path']}")
