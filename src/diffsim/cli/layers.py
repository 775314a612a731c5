"""`diffsim layers --model M`: every attention layer with its tokens and channels, and the aliases."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from .numbers import SIZE
from .options import model_option


@click.command()
@model_option
@click.option(
    "--size",
    type=SIZE,
    default=None,
    help="Image size the token counts refer to [default: the model kind's: SD 512, SDXL 1024, DiT its native size].",
)
@click.option("--kind", type=click.Choice(["self", "cross", "all"]), default="all", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per layer.")
def layers(model: str | None, size: int | None, kind: str, as_json: bool) -> None:
    """List the model's attention layers: SD 1.x/2.x, SDXL, DiT, ... (read from its configs: no weights loaded)."""
    from ..backbones.loading import DEFAULT_MODEL
    from ..backbones.skeleton import model_layers

    model = model or DEFAULT_MODEL
    model_kind, size, found, aliases = model_layers(model, size)
    rows = [lay for lay in found if kind == "all" or lay.kind == kind]
    if as_json:
        for lay in rows:
            click.echo(
                json.dumps(
                    {
                        "path": lay.path,
                        "alias": lay.alias,
                        "kind": lay.kind,
                        "tokens": lay.tokens,
                        "grid": list(lay.grid),
                        "channels": lay.channels,
                        "heads": lay.heads,
                        "head_dim": lay.head_dim,
                    }
                )
            )
        return
    table = Table(title=f"attention layers of {model} at {size}x{size}")
    for col in ("layer", "alias", "kind", "tokens", "channels", "heads", "head dim"):
        table.add_column(col, justify="right" if col in ("tokens", "channels", "heads", "head dim") else "left")
    for lay in rows:
        table.add_row(
            lay.path,
            lay.alias or "",
            lay.kind,
            f"{lay.tokens} ({lay.grid[0]}x{lay.grid[1]})",
            str(lay.channels),
            str(lay.heads),
            str(lay.head_dim),
        )
    console = Console(width=max(Console().width, 120))
    console.print(table)
    from ..backbones.kinds import reader_of

    for note in reader_of(model_kind).backbone_class.alias_notes(aliases):
        console.print(note, soft_wrap=True)
