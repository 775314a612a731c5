"""The attention layers of any registered model kind, read from its configs (meta device: no weights loaded)."""

from __future__ import annotations

import os

from .detect import detect_kind
from .kinds import reader_of
from .layers import AttentionLayer


def model_layers(
    model: str | os.PathLike, size: int | None = None, revision: str | None = None
) -> tuple[str | None, int, list[AttentionLayer], dict[str, str]]:
    """(kind, size, layers, aliases) of ``model`` at image size ``size`` (default: the kind's default)."""
    kind = detect_kind(model, revision)
    size, rows, aliases = reader_of(kind).backbone_class.skeleton_layers(model, size, revision)
    return kind, size, rows, aliases
