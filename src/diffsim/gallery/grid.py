"""Pictures of retrieval results and near-duplicate groups (matplotlib, Agg backend).

:func:`retrieval_grid`: one row per (query, metric): the query (blue frame, the metric's name under
it), then its top-k with rank and score. :func:`group_grid`: the members of one group. Every cell is a
``thumb`` x ``thumb`` thumbnail with a caption strip; the PNG is exactly ``cols * thumb`` pixels wide and
``rows * (thumb + caption)`` high.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

CAPTION = 36  # pixels of text under each thumbnail
DPI = 100


@dataclass(frozen=True)
class Cell:
    """One thumbnail: an image file (or PIL image) and up to two caption lines."""

    image: str | os.PathLike | Image.Image | None
    title: str = ""
    subtitle: str = ""
    frame: str | None = None  # a matplotlib colour for a frame (e.g. the query)


def thumbnail(image: str | os.PathLike | Image.Image | None, size: int) -> np.ndarray:
    """A ``size`` x ``size`` RGB array (letterboxed, aspect kept); grey with a cross when unreadable."""
    canvas = Image.new("RGB", (size, size), (235, 235, 235))
    try:
        im = image if isinstance(image, Image.Image) else Image.open(image) if image is not None else None
        if im is not None:
            im = ImageOps.exif_transpose(im).convert("RGB")
            im = ImageOps.contain(im, (size, size), Image.Resampling.LANCZOS)
            canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    except OSError:
        pass
    return np.asarray(canvas)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def draw(cells: Sequence[Sequence[Cell]], out: str | os.PathLike, thumb: int = 160) -> Path:
    """Write rows of cells as one PNG (rows may be shorter than the longest; the rest is blank)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    rows = max(1, len(cells))
    cols = max(1, max((len(r) for r in cells), default=1))
    cell_h = thumb + CAPTION
    width, height = cols * thumb, rows * cell_h
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    chars = max(8, thumb // 6)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            left = c * thumb / width
            bottom = 1 - ((r * cell_h + thumb) / height)
            ax = fig.add_axes((left + 2 / width, bottom, (thumb - 4) / width, (thumb - 4) / height))
            ax.imshow(thumbnail(cell.image, thumb), interpolation="lanczos")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(cell.frame is not None)
                if cell.frame is not None:
                    spine.set_edgecolor(cell.frame)
                    spine.set_linewidth(3)
            y = bottom - 4 / height
            fig.text(
                left + 0.5 * thumb / width,
                y,
                _short(cell.title, chars),
                ha="center",
                va="top",
                fontsize=9,
                fontweight="bold",
            )
            fig.text(
                left + 0.5 * thumb / width,
                y - 15 / height,
                _short(cell.subtitle, chars + 4),
                ha="center",
                va="top",
                fontsize=7,
                color="#444444",
            )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, facecolor="white")
    return out


@dataclass(frozen=True)
class ResultRow:
    """One row of a retrieval grid: a query, the metric that ranked, and its hits (file, id, score)."""

    query: str | os.PathLike | Image.Image
    query_name: str
    metric: str
    hits: Sequence[tuple[str, str, float]]  # (file to show, id as indexed, score)


def retrieval_grid(rows: Sequence[ResultRow], out: str | os.PathLike, thumb: int = 160) -> Path:
    """The paper's Figure 4 layout: per row a query then its ranked results with scores."""
    cells = []
    for row in rows:
        line = [Cell(row.query, row.metric, "query: " + Path(str(row.query_name)).name, frame="tab:blue")]
        for rank, (file, id_, score) in enumerate(row.hits, 1):
            line.append(Cell(file, f"#{rank}  {score:.4f}", id_))
        cells.append(line)
    return draw(cells, out, thumb)


def group_grid(
    members: Sequence[tuple[str, str]], out: str | os.PathLike, title: str = "", thumb: int = 128, cols: int = 6
) -> Path:
    """The images of one near-duplicate group ((file, id) pairs), ``cols`` per row."""
    cells = [Cell(f, title if i == 0 and title else "", id_) for i, (f, id_) in enumerate(members)]
    return draw([cells[i : i + cols] for i in range(0, len(cells), cols)], out, thumb)
