"""`diffsim map A B --out map.png`: where two images agree, as per-token maps over both images."""

from __future__ import annotations

import click

from .numbers import FINITE
from .options import build_metric, diffsim_options


@click.command("map")
@click.argument("image_a", type=str)
@click.argument("image_b", type=str)
@click.option("--out", "-o", type=click.Path(dir_okay=False), required=True, help="PNG to write (1000 x 540 px).")
@click.option("--vmin", type=FINITE, default=None, help="Colour scale minimum. [default: the maps' minimum]")
@click.option("--vmax", type=FINITE, default=None, help="Colour scale maximum. [default: the maps' maximum]")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success (the PNG is still written).")
@diffsim_options
@click.pass_context
def map_command(
    ctx: click.Context,
    image_a: str,
    image_b: str,
    out: str,
    metric_name: str | None,
    vmin: float | None,
    vmax: float | None,
    quiet: bool,
    **opts,
) -> None:
    """Draw the per-token AAS cosine maps of A's and B's tokens over both images, with the score.

    One layer (default up0: 16 x 16 tokens at 512 px; --layer up1 / up2 are finer).
    """
    if vmin is not None and vmax is not None and vmin >= vmax:
        from ..errors import ConfigError

        raise ConfigError(f"--vmin ({vmin:g}) must be below --vmax ({vmax:g})")
    from .._optional import require

    require("matplotlib", "plots", "diffsim map")
    from ..images import check_image_file
    from ..viz.maps import save_similarity_map

    for p in (image_a, image_b):  # every input is checked before any model loads
        check_image_file(p)
    metric = build_metric(ctx, metric_name, "diffsim-s", opts)
    path, maps = save_similarity_map(metric, image_a, image_b, out, vmin=vmin, vmax=vmax)
    h, w = maps.map_a.shape
    if not quiet:
        click.echo(f"{maps.score:.6f}\tlayer {maps.layer} ({h}x{w} tokens)\t{path}")
