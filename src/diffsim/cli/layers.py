"""`diffsim layers --model M`: every attention layer with its tokens and channels, and the aliases."""
from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from .options import model_option


@click.command()
@model_option
@click.option("--size", type=int, default=512, show_default=True, help="Image size the token counts refer to.")
@click.option("--kind", type=click.Choice(["self", "cross", "all"]), default="all", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per layer.")
def layers(model: str | None, size: int, kind: str, as_json: bool) -> None:
    """List the U-Net's attention layers (read from its config: no weights are loaded)."""
    from ..backbones.loading import DEFAULT_MODEL

    model = model or DEFAULT_MODEL
    from ..backbones.layers import alias_table, list_attention_layers
    from ..backbones.loading import load_unet_skeleton
    from ..images import check_size

    unet, factor = load_unet_skeleton(model)
    check_size(size, factor)
    rows = [l for l in list_attention_layers(unet, size // factor) if kind == "all" or l.kind == kind]
    if as_json:
        for l in rows:
            click.echo(json.dumps({"path": l.path, "alias": l.alias, "kind": l.kind, "tokens": l.tokens,
                                   "grid": list(l.grid), "channels": l.channels, "heads": l.heads,
                                   "head_dim": l.head_dim}))
        return
    table = Table(title=f"attention layers of {model} at {size}x{size}")
    for col in ("layer", "alias", "kind", "tokens", "channels", "heads", "head dim"):
        table.add_column(col, justify="right" if col in ("tokens", "channels", "heads", "head dim") else "left")
    for l in rows:
        table.add_row(l.path, l.alias or "", l.kind, f"{l.tokens} ({l.grid[0]}x{l.grid[1]})", str(l.channels),
                      str(l.heads), str(l.head_dim))
    console = Console(width=max(Console().width, 120))
    console.print(table)
    aliases = {a: p for a, p in alias_table(unet).items() if not a.endswith(".cross")}
    console.print("aliases (the last self-attention of each block; add '.cross' for its attn2): "
                  + ", ".join(f"{a}={p}" for a, p in aliases.items()), soft_wrap=True)
