"""Score matrices: all pairs of two image sets embedded once, drawn as a heat map with thumbnails, or as CSV."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from PIL import Image

from .._optional import require
from ..errors import ImageError
from ..images import ImageLike, describe
from .contrast import text_colour
from .figure import new_figure, save, to_pil
from .ticks import decimals, plain_colorbar
from .views import label, thumbnail

# layout, in inches: [row labels | thumbnails | cells | colour bar], [title | thumbnails | cells | column labels]
LABEL_W, THUMB, GAP, BAR_W, TITLE_H, MARGIN = 1.5, 0.7, 0.08, 1.0, 0.5, 0.15
MAX_GRID = 12.0  # the cells fill at most this many inches per side
MIN_CELL_FOR_VALUES = 0.35  # smaller cells show colours only
COL_FONT, COL_CHARS = 7.0, 32  # column labels: font size (points) and the longest name shown (characters)
COL_LINE = COL_FONT * 1.3 / 72  # a column label's line height, inches


@dataclass(frozen=True)
class ScoreMatrix:
    """All-pairs scores (len(rows), len(cols)) and what they are."""

    scores: torch.Tensor
    rows: list[Any]
    cols: list[Any]
    metric: str
    higher_is_better: bool

    @property
    def row_names(self) -> list[str]:
        return [describe(im, i) for i, im in enumerate(self.rows)]

    @property
    def col_names(self) -> list[str]:
        return [describe(im, i) for i, im in enumerate(self.cols)]


def score_matrix(
    metric: Any, rows: Sequence[ImageLike], cols: Sequence[ImageLike] | None = None, progress: bool = False
) -> ScoreMatrix:
    """Every row image against every column image (``cols`` defaults to ``rows``); one embed call in all."""
    rows = list(rows)
    if not rows or (cols is not None and not list(cols)):
        raise ImageError("no images given for the matrix")
    if cols is None:
        feats = metric.embed(rows, progress=progress)
        scores, cols_l = metric.compare_matrix(feats, feats), rows
    else:
        cols_l = list(cols)
        feats = metric.embed(rows + cols_l, progress=progress)  # images in both sets are embedded once
        scores = metric.compare_matrix(feats[: len(rows)], feats[len(rows) :])
    name = str(getattr(metric, "name", None) or metric.config.get("metric", "metric"))
    return ScoreMatrix(scores.detach().float().cpu(), rows, cols_l, name, bool(metric.higher_is_better))


def write_csv_stream(sm: ScoreMatrix, fh: TextIO) -> None:
    """The CSV of :func:`write_csv` to an open text stream."""
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(["image", *sm.col_names])
    for name, row in zip(sm.row_names, sm.scores.tolist(), strict=False):
        w.writerow([name, *(f"{v:.6f}" for v in row)])


def write_csv(sm: ScoreMatrix, path: str | os.PathLike) -> Path:
    """One row per row image: its path, then its score against each column image (header: the column paths)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        write_csv_stream(sm, fh)
    return out


def cell_size(n_rows: int, n_cols: int) -> float:
    """Cell side in inches: 0.8 for small matrices, smaller so the grid stays within MAX_GRID inches."""
    return max(0.15, min(0.8, MAX_GRID / max(n_rows, n_cols, 1)))


def text_width(text: str, size: float = COL_FONT) -> float:
    """Width in inches of ``text`` set in matplotlib's default font at ``size`` points (from its glyph outlines)."""
    textpath = require("matplotlib.textpath", "plots", "drawing figures")
    return float(textpath.TextPath((0, 0), text, size=size).get_extents().width) / 72 if text else 0.0


def col_label_layout(cell: float, labels: Sequence[str] | None = None) -> tuple[float, float]:
    """(rotation in degrees, room under the cells in inches) for the column labels.

    Labels that fit their cell stay horizontal; longer ones are turned 45 degrees (neighbours then sit
    ``cell * sin 45`` apart across the text, more than a line's height) or, in very narrow cells, 90 degrees.
    Without ``labels`` the room assumes short names: one line at 0.8 in per cell, vertical text below that.
    """
    if labels is None:
        return (0.0, 0.3) if cell >= 0.8 else (90.0, 0.8)
    longest = max((text_width(s) for s in labels), default=0.0)
    if longest <= cell * 0.9:
        return 0.0, 0.3
    if cell * math.sin(math.radians(45)) >= COL_LINE * 1.15:
        return 45.0, (longest + COL_LINE) * math.sin(math.radians(45)) + 0.12
    return 90.0, longest + 0.12


def col_label_height(cell: float, labels: Sequence[str] | None = None) -> float:
    """Room under the cells for the column labels (see :func:`col_label_layout`)."""
    return col_label_layout(cell, labels)[1]


def figure_size(n_rows: int, n_cols: int, col_labels: Sequence[str] | None = None) -> tuple[float, float]:
    """(width, height) in inches of the matrix figure; its PNG is that times 100 pixels."""
    c = cell_size(n_rows, n_cols)
    width = MARGIN + LABEL_W + THUMB + GAP + n_cols * c + BAR_W + MARGIN
    height = MARGIN + TITLE_H + THUMB + GAP + n_rows * c + col_label_height(c, col_labels) + MARGIN
    return width, height


def matrix_figure(sm: ScoreMatrix, title: str | None = None, cmap: str = "viridis") -> Any:
    """Heat map of the scores with a thumbnail of each image on both axes and the value in every cell.

    The colour map is reversed for distances, so the same colour always means "similar"; each value is
    written in black or white, whichever contrasts more with its cell.
    """
    mpl = require("matplotlib", "plots", "drawing figures")
    colors = require("matplotlib.colors", "plots", "drawing figures")
    values = sm.scores.numpy().astype(np.float64)
    n, m = values.shape
    c = cell_size(n, m)
    col_labels = [label(im, j, COL_CHARS) for j, im in enumerate(sm.cols)]
    rotation, room = col_label_layout(c, col_labels)
    width, height = figure_size(n, m, col_labels)
    fig = new_figure(width, height)
    x0 = MARGIN + LABEL_W + THUMB + GAP  # left edge of the cells (inches)
    y0 = MARGIN + room  # bottom edge of the cells
    ax = fig.add_axes((x0 / width, y0 / height, m * c / width, n * c / height))
    colours = mpl.colormaps[cmap if sm.higher_is_better else f"{cmap}_r"]
    finite = values[np.isfinite(values)]
    norm = colors.Normalize(float(finite.min()) if finite.size else 0.0, float(finite.max()) if finite.size else 1.0)
    image = ax.imshow(values, cmap=colours, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if c >= MIN_CELL_FOR_VALUES:
        d = decimals(values)
        size = min(9.0, c * 72 * 0.85 / (0.62 * (d + 2)))
        for i in range(n):
            for j in range(m):
                v = values[i, j]
                ax.text(
                    j, i, f"{v:.{d}f}", ha="center", va="center", fontsize=size, color=text_colour(colours(norm(v)))
                )
    side = min(THUMB, c) * 0.95
    for i, im in enumerate(sm.rows):
        y = y0 + (n - i - 0.5) * c
        _thumb(
            fig,
            im,
            i,
            (x0 - GAP - THUMB + (THUMB - side) / 2) / width,
            (y - side / 2) / height,
            side / width,
            side / height,
        )
        fig.text((x0 - GAP - THUMB - 0.05) / width, y / height, label(im, i), ha="right", va="center", fontsize=8)
    for j, im in enumerate(sm.cols):
        x = x0 + (j + 0.5) * c
        _thumb(
            fig,
            im,
            j,
            (x - side / 2) / width,
            (y0 + n * c + GAP + (THUMB - side) / 2) / height,
            side / width,
            side / height,
        )
        fig.text(
            x / width,
            (y0 - 0.05) / height,
            col_labels[j],
            ha="center" if rotation == 0 else "right",
            va="top" if rotation != 90 else "center",
            fontsize=COL_FONT,
            rotation=rotation,
            rotation_mode="anchor",
        )
    cax = fig.add_axes(((x0 + m * c + 0.2) / width, y0 / height, 0.15 / width, n * c / height))
    kind = "score (higher = more similar)" if sm.higher_is_better else "distance (lower = more similar)"
    cbar = fig.colorbar(image, cax=cax)
    cbar.set_label(kind, fontsize=8)
    plain_colorbar(cbar, norm.vmin, norm.vmax)
    fig.text(
        0.5,
        1 - (MARGIN + TITLE_H / 2) / height,
        title or f"{sm.metric}: {n} × {m}",
        ha="center",
        va="center",
        fontsize=11,
    )
    return fig


def _thumb(fig: Any, image: Any, index: int, left: float, bottom: float, w: float, h: float) -> None:
    ax = fig.add_axes((left, bottom, w, h))
    ax.imshow(np.asarray(thumbnail(image, 96, index)))
    ax.set_axis_off()


def matrix_image(sm: ScoreMatrix, title: str | None = None) -> Image.Image:
    """The heat map as an RGB PIL image (size: :func:`figure_size` x 100 px)."""
    return to_pil(matrix_figure(sm, title))


def save_matrix(sm: ScoreMatrix, path: str | os.PathLike, title: str | None = None) -> Path:
    """Write the heat map as a PNG."""
    return save(matrix_figure(sm, title), path)
