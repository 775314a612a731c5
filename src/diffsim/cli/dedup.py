"""`diffsim dedup --index STORE [--threshold S]`: groups of near-duplicate images in a gallery store.

Without ``--threshold`` the store metric's copy-detection preset is used (``sscd``: 0.75).
"""

from __future__ import annotations

import json

import click

from .numbers import COUNT, FINITE


@click.command()
@click.option("--index", "store", required=True, help="Store folder from `diffsim index build`.")
@click.option(
    "--threshold",
    "-t",
    type=FINITE,
    default=None,
    help="Score a pair must reach (>= for similarities, <= for distances such as LPIPS). "
    "[default: the store metric's copy-detection preset, e.g. 0.75 for sscd; required for other metrics]",
)
@click.option(
    "--neighbours",
    type=COUNT,
    default=10,
    show_default=True,
    help="Candidates per image from the faiss index over pooled vectors (then scored exactly).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write groups.csv, groups.json and group-NNNN.png here.",
)
@click.option("--no-pictures", is_flag=True, help="With --out: no PNG per group.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per group.")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or mps. [default: best available]")
def dedup(
    store: str,
    threshold: float | None,
    neighbours: int,
    out: str | None,
    no_pictures: bool,
    as_json: bool,
    device: str | None,
) -> None:
    """Group the images of STORE whose exact score passes --threshold (connected components)."""
    from ..gallery.dedup import find_groups, write_groups
    from ..gallery.search import Gallery, metric_for, require_faiss
    from .retrieve import open_stores

    (st,) = open_stores((store,))
    require_faiss()
    gallery = Gallery(st, metric_for(st, **({"device": device} if device else {})))
    if threshold is None:
        threshold = getattr(gallery.metric.settings, "threshold", None)
        if threshold is None:
            raise click.UsageError(
                f"--threshold is required: the store's metric {st.metric_name} has no copy-detection preset "
                "(sscd has one: 0.75)"
            )
        click.echo(f"threshold {threshold} ({st.metric_name}'s copy-detection preset)", err=True)
    res = find_groups(gallery, threshold, neighbours)
    for g, members in enumerate(res.groups, 1):
        if as_json:
            click.echo(json.dumps({"group": g, "size": len(members), "members": members}))
        else:
            click.echo(f"group {g} ({len(members)}): " + "  ".join(members))
    click.echo(
        f"{len(res.groups)} group(s) of near-duplicates among {len(st)} images "
        f"({res.candidates} candidate pairs scored exactly)",
        err=True,
    )
    if out:
        write_groups(res, gallery, out, pictures=not no_pictures)
        click.echo(f"wrote {out}", err=True)
