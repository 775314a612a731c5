"""`diffsim matrix IMAGES... | DIR [--against DIR2]`: all-pairs scores as a heat map PNG and/or CSV."""

from __future__ import annotations

import sys

import click

from .image_args import expand_images
from .options import build_metric, diffsim_options


@click.command("matrix")
@click.argument("images", nargs=-1, required=True)
@click.option(
    "--against",
    "against",
    multiple=True,
    help="Second set (folder or file, repeatable): rows are IMAGES, columns these. [default: IMAGES]",
)
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Heat map PNG to write.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV to write: one row per image (its path, then its scores). '-' for stdout.",
)
@click.option("--title", default=None, help="Figure title. [default: metric and size]")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@diffsim_options
@click.pass_context
def matrix_command(
    ctx: click.Context,
    images: tuple[str, ...],
    against: tuple[str, ...],
    out: str | None,
    csv_path: str | None,
    title: str | None,
    metric_name: str | None,
    quiet: bool,
    **opts,
) -> None:
    """Score every image of IMAGES (files and/or folders) against every other, or against --against.

    Each image is embedded once. Without --out and --csv the CSV goes to stdout.
    """
    from ..viz.matrix import score_matrix, write_csv_stream

    rows = expand_images(images)
    cols = expand_images(against) if against else None
    if out:
        from .._optional import require

        require("matplotlib", "plots", "diffsim matrix --out")
    from ..images import check_image_file

    for path in [*rows, *(cols or [])]:  # every input is checked before any model loads
        check_image_file(path)
    metric = build_metric(ctx, metric_name, "diffsim-s", opts)
    sm = score_matrix(metric, rows, cols, progress=not quiet)
    if out:
        from ..viz.matrix import save_matrix

        click.echo(f"heat map: {save_matrix(sm, out, title)}", err=csv_path == "-")
    if csv_path and csv_path != "-":
        from ..viz.matrix import write_csv

        click.echo(f"csv: {write_csv(sm, csv_path)}")
    elif csv_path == "-" or not out:
        write_csv_stream(sm, sys.stdout)
