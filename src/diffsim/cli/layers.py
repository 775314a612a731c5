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
    help="Image size the token counts refer to [default: 512; SDXL 1024; DiT its native size].",
)
@click.option("--kind", type=click.Choice(["self", "cross", "all"]), default="all", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per layer.")
def layers(model: str | None, size: int | None, kind: str, as_json: bool) -> None:
    """List the model's attention layers: SD 1.x/2.x, SDXL or DiT (read from its configs: no weights loaded)."""
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
    if model_kind == "dit":
        console.print(f"aliases: block0..block{len(aliases) - 1} = transformer_blocks.L.attn1", soft_wrap=True)
        return
    short = {a: p for a, p in aliases.items() if not a.endswith(".cross") and ".a" not in a}
    console.print(
        "aliases (the last self-attention of each block; add '.cross' for its attn2): "
        + ", ".join(f"{a}={p}" for a, p in short.items()),
        soft_wrap=True,
    )
    if model_kind == "sdxl":
        console.print(
            "every transformer block also has an alias <block>.a<attention>.t<transformer> (e.g. "
            "up0.a2.t9 = up_blocks.0.attentions.2.transformer_blocks.9.attn1)",
            soft_wrap=True,
        )
