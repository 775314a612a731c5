"""The line `index build` and `index merge` print about the store's ANN index."""

from __future__ import annotations

from typing import Any

import click


def echo_ann(store: Any, kind: str | None) -> None:
    """Bring the store's ANN index up to date (:func:`diffsim.gallery.ann.update`) and report it."""
    from ..gallery import ann

    done = ann.update(store, kind)
    if done is None:
        return
    index, seconds = done
    click.echo(
        f"ANN index: {index.info.kind} over {index.info.n} vectors of {index.info.dim} dimensions, "
        f"{index.info.bytes / 1e6:.2f} MB, ready in {seconds:.2f} s"
    )
