"""Matplotlib figures on the Agg canvas (no pyplot, no global backend change) and their export."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from PIL import Image

from .._optional import require

DPI = 100  # every figure is laid out in inches at this resolution: its PNG is exactly figsize * DPI pixels


def new_figure(width_in: float, height_in: float) -> Any:
    """A ``matplotlib.figure.Figure`` attached to an Agg canvas (headless; safe in threads and servers)."""
    figure = require("matplotlib.figure", "plots", "drawing figures")
    agg = require("matplotlib.backends.backend_agg", "plots", "drawing figures")
    fig = figure.Figure(figsize=(width_in, height_in), dpi=DPI)
    agg.FigureCanvasAgg(fig)
    return fig


def to_pil(fig: Any) -> Image.Image:
    """Render a figure to an RGB PIL image of exactly ``figsize * DPI`` pixels."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


def save(fig: Any, path: str | os.PathLike) -> Path:
    """Write a figure as PNG (``figsize * DPI`` pixels); the folder is created if needed."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI)
    return out
