"""`diffsim index merge PART... --out STORE`: join stores built in parts (--num-shards, torchrun, SLURM)."""

from __future__ import annotations

import click


@click.command("merge")
@click.argument("parts", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option(
    "--out",
    "-o",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    help="The merged store (created, or an existing store with the same settings).",
)
def merge(parts: tuple[str, ...], out: str) -> None:
    """Join the part stores PARTS into --out: same metric settings and gallery required, ids unique.

    Shard files are hard-linked where the file system allows (else copied); the parts are left as they are.
    """
    from ..scale.merge import merge_stores

    store = merge_stores(parts, out)
    click.echo(
        f"{store.folder}: {len(store)} images from {len(parts)} part(s) ({store.nbytes() / 1e6:.1f} MB)"
        + (f", {len(store.errors())} unreadable" if store.errors() else "")
    )
    from ..gallery.ann import update_index

    line = update_index(store, None)
    if line is not None:
        click.echo(line)
