"""Pictures: map overlays and matrix heat maps render at their sizes and show the metric's own numbers."""

from __future__ import annotations

import csv
import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from diffsim import ConfigError, create_metric
from diffsim._optional import MissingExtraError, require
from diffsim.viz import (
    ScoreMatrix,
    contrast_ratio,
    figure_size,
    matrix_figure,
    matrix_image,
    pair_maps,
    save_matrix,
    score_matrix,
    similarity_overlay,
    text_colour,
    upsample,
    write_csv_stream,
)

pytest.importorskip("matplotlib")


def bilinear_reference(m: np.ndarray, h: int, w: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize with edge clamping, written out pixel by pixel."""
    sh, sw = m.shape
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            fy = min(max((y + 0.5) * sh / h - 0.5, 0.0), sh - 1)
            fx = min(max((x + 0.5) * sw / w - 0.5, 0.0), sw - 1)
            y0, x0 = int(np.floor(fy)), int(np.floor(fx))
            y1, x1 = min(y0 + 1, sh - 1), min(x0 + 1, sw - 1)
            dy, dx = fy - y0, fx - x0
            out[y, x] = (
                (1 - dy) * (1 - dx) * m[y0, x0]
                + (1 - dy) * dx * m[y0, x1]
                + dy * (1 - dx) * m[y1, x0]
                + dy * dx * m[y1, x1]
            )
    return out


def test_upsample_is_bilinear():
    m = torch.tensor([[0.0, 1.0, 4.0], [2.0, 3.0, -1.0]])
    got = upsample(m, 7, 10)
    assert got.shape == (7, 10)
    np.testing.assert_allclose(got, bilinear_reference(m.numpy(), 7, 10), atol=1e-6)
    with pytest.raises(ConfigError, match="2-D"):
        upsample(torch.zeros(1, 2, 2), 4, 4)


def test_overlay_shows_the_metrics_maps_and_score(sharp_metric, image_files):
    a, b = image_files[0], image_files[3]
    maps = pair_maps(sharp_metric, a, b)
    ma, mb = sharp_metric.similarity_map(a, b)
    assert maps.map_a.shape == (4, 4)  # up1 at 64 px
    assert torch.equal(maps.map_a, ma) and torch.equal(maps.map_b, mb)
    assert maps.score == pytest.approx(sharp_metric.score(a, b), abs=1e-7)
    assert maps.layer == "up1" and maps.step == 500 and maps.higher_is_better
    assert 0.2 < float(ma.min()) < float(ma.max()) < 1.0  # the sharpened model gives maps with structure
    im = sharp_metric.similarity_map(a, b, overlay=True)
    assert isinstance(im, Image.Image) and im.mode == "RGB" and im.size == (1000, 540)
    assert np.asarray(im).std() > 20  # not a blank canvas


def test_overlay_of_identical_images_and_fixed_range(sharp_metric, image_files):
    im = similarity_overlay(sharp_metric, image_files[1], image_files[1], vmin=0.0, vmax=1.0)
    assert im.size == (1000, 540)
    maps = pair_maps(sharp_metric, image_files[1], image_files[1])
    assert torch.allclose(maps.map_a, torch.ones(4, 4), atol=1e-6)


def test_maps_need_one_layer_and_a_metric_with_token_maps(sharp_metric, tiny_clip_path, image_files):
    two = sharp_metric.with_settings(layer=["up0", "up1"])
    with pytest.raises(ConfigError, match="2 layers"):
        pair_maps(two, image_files[0], image_files[1])
    assert pair_maps(two, image_files[0], image_files[1], layer="up0").map_a.shape == (2, 2)
    clip = create_metric("clip-i", model=tiny_clip_path, device="cpu", dtype="float32", size=32)
    with pytest.raises(ConfigError, match="no per-token maps"):
        pair_maps(clip, image_files[0], image_files[1])


def test_score_matrix_embeds_each_image_once(sharp_metric, image_files, monkeypatch):
    m = sharp_metric.with_settings(step=321)  # a config nothing else uses: every image is a cache miss
    calls = []
    real = m.embed
    monkeypatch.setattr(m, "embed", lambda images, **kw: calls.append(list(images)) or real(images, **kw))
    before = len(m.cache)
    rows, cols = image_files[:3], [image_files[2], image_files[3], image_files[0]]
    sm = score_matrix(m, rows, cols)
    assert len(calls) == 1 and len(m.cache) - before == 4  # one call; 4 distinct images, each embedded once
    monkeypatch.undo()
    assert torch.allclose(sm.scores, m.matrix(rows, cols), atol=1e-7)
    assert sm.row_names == [str(p) for p in rows] and sm.col_names == [str(p) for p in cols]
    square = score_matrix(m, rows)
    assert torch.allclose(square.scores, square.scores.T, atol=1e-6)
    assert torch.allclose(square.scores.diagonal(), torch.ones(3), atol=1e-6)


def test_csv_has_one_row_per_image(sharp_metric, image_files):
    sm = score_matrix(sharp_metric, image_files[:2], image_files[2:5])
    buf = io.StringIO()
    write_csv_stream(sm, buf)
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert rows[0] == ["image", *map(str, image_files[2:5])]
    assert [r[0] for r in rows[1:]] == [str(p) for p in image_files[:2]]
    got = torch.tensor([[float(v) for v in r[1:]] for r in rows[1:]])
    assert torch.allclose(got, sm.scores, atol=1e-6)


def test_matrix_png_size_and_readable_cells(sharp_metric, image_files, tmp_path):
    sm = score_matrix(sharp_metric, image_files[:3])
    path = save_matrix(sm, tmp_path / "m.png")
    with Image.open(path) as im:
        assert im.size == (598, 428)  # 3 x 3 at 0.8 in per cell: 5.98 x 4.28 in at 100 dpi
    assert figure_size(3, 3) == pytest.approx((5.98, 4.28))
    fig = matrix_figure(sm)
    ax = fig.axes[0]
    heat = ax.images[0]
    texts = ax.texts
    assert len(texts) == 9
    values = sm.scores.numpy()
    seen = set()
    for t in texts:
        j, i = (round(v) for v in t.get_position())
        assert float(t.get_text()) == pytest.approx(values[i, j], abs=1e-3)
        cell = heat.cmap(heat.norm(values[i, j]))
        assert contrast_ratio(t.get_color(), cell) >= 4.5
        seen.add(tuple(t.get_color()))
    assert len(seen) == 2  # bright diagonal cells get black text, dark cells white


def test_distances_use_the_reversed_colour_map():
    imgs = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    vals = torch.tensor([[0.0, 0.5], [0.5, 0.0]])
    sim = matrix_figure(ScoreMatrix(1 - vals, imgs, imgs, "s", True)).axes[0].images[0]
    dist = matrix_figure(ScoreMatrix(vals, imgs, imgs, "d", False)).axes[0].images[0]
    assert np.allclose(sim.cmap(sim.norm(1.0)), dist.cmap(dist.norm(0.0)))  # "most similar" looks the same


def test_large_matrix_shrinks_cells_and_drops_values():
    imgs = [torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(36)]
    sm = ScoreMatrix(torch.rand(36, 36, generator=torch.Generator().manual_seed(1)), imgs, imgs, "x", True)
    im = matrix_image(sm)
    w, h = figure_size(36, 36, [f"#{i}" for i in range(36)])  # short labels: horizontal, one line of room
    assert im.size == (round(w * 100), round(h * 100)) and im.size[0] < 1700
    assert len(matrix_figure(sm).axes[0].texts) == 0


def test_text_colour_is_the_more_contrasting_one():
    assert contrast_ratio((0, 0, 0), (1, 1, 1)) == pytest.approx(21.0)
    assert text_colour((1.0, 1.0, 0.0)) == (0.0, 0.0, 0.0)
    assert text_colour((0.1, 0.0, 0.3)) == (1.0, 1.0, 1.0)
    grey = np.linspace(0, 1, 101)
    assert min(contrast_ratio(text_colour((g, g, g)), (g, g, g)) for g in grey) > 4.5


def test_missing_extra_names_it(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    hint = r'diffsim map needs .*matplotlib.*pip install "diffsim-metric\[plots\]"'
    with pytest.raises(MissingExtraError, match=hint):
        require("matplotlib.figure", "plots", "diffsim map")


def _label_boxes(fig, size: float) -> tuple[list[np.ndarray], float]:
    """The rotated rectangles (4 corners, display pixels) of the column labels, and the cells' bottom edge."""
    renderer = fig.canvas.get_renderer()
    boxes = []
    for t in (t for t in fig.texts if t.get_fontsize() == size):
        angle = t.get_rotation()
        t.set_rotation(0)
        bb = t.get_window_extent(renderer)
        t.set_rotation(angle)
        w, h = bb.width, bb.height
        x0 = {"left": 0.0, "center": -w / 2, "right": -w}[t.get_horizontalalignment()]
        y0 = {"bottom": 0.0, "baseline": 0.0, "center": -h / 2, "top": -h}[t.get_verticalalignment()]
        corners = np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]])
        r = np.radians(angle)
        rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
        boxes.append(corners @ rot.T + fig.transFigure.transform(t.get_position()))
    return boxes, fig.axes[0].get_window_extent(renderer).y0


def _overlap(p: np.ndarray, q: np.ndarray) -> bool:
    """Separating-axis test for two convex quadrilaterals."""
    for poly in (p, q):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            a, b = p @ axis, q @ axis
            if a.max() <= b.min() or b.max() <= a.min():
                return False
    return True


@pytest.mark.parametrize(
    ("n", "stem", "rotation"),
    [(3, "img{}", 0), (6, "generated_output_seed_{:04d}_final", 45), (60, "a_long_file_name_{:03d}_v2", 90)],
)
def test_column_labels_never_overlap(tmp_path, n, stem, rotation):
    """Long file names are turned (45 or 90 degrees) so that no two column labels overlap, and the labels
    stay inside the figure below the cells; short names stay horizontal."""
    from diffsim.viz.matrix import COL_FONT, col_label_layout, figure_size

    paths = []
    for i in range(n):
        p = tmp_path / f"{stem.format(i)}.png"
        Image.new("RGB", (8, 8), (i * 4 % 256, 90, 160)).save(p)
        paths.append(p)
    sm = ScoreMatrix(torch.rand(n, n, generator=torch.Generator().manual_seed(n)), paths, paths, "x", True)
    fig = matrix_figure(sm)
    names = [t.get_text() for t in fig.texts if t.get_fontsize() == COL_FONT]  # long names are ellipsised
    assert [n.rstrip("…") for n in names] == [p.name[: len(n.rstrip("…"))] for n, p in zip(names, paths, strict=True)]
    assert col_label_layout(fig.axes[0].get_window_extent().width / 100 / n, names)[0] == rotation
    boxes, cells_bottom = _label_boxes(fig, COL_FONT)
    assert len(boxes) == n
    width, height = figure_size(n, n, names)
    assert fig.get_size_inches() == pytest.approx((width, height))
    for a, b in zip(boxes, boxes[1:], strict=False):
        assert not _overlap(a, b)
    every = np.concatenate(boxes)
    assert every[:, 0].min() >= 0 and every[:, 1].min() >= 0 and every[:, 1].max() <= cells_bottom
    if n == 3:  # short names: the layout (and the PNG size) of before
        assert figure_size(3, 3, names) == pytest.approx(figure_size(3, 3))
