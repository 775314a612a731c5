"""Similarity maps: the per-token AAS cosines of A's and B's tokens overlaid on both images (paper Fig. 3)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .._optional import require
from ..errors import ConfigError
from ..images import ImageLike, describe
from .figure import new_figure, save, to_pil
from .ticks import plain_colorbar
from .views import model_view

MAP_SIZE = (10.0, 5.4)  # inches; the PNG is 1000 x 540 px
CMAP = "turbo"


@dataclass(frozen=True)
class PairMaps:
    """Everything a map figure shows: the two token maps (h, w), the score and what produced them."""

    map_a: torch.Tensor
    map_b: torch.Tensor
    score: float
    layer: str
    metric: str
    higher_is_better: bool
    step: int | None = None


def upsample(token_map: torch.Tensor, height: int, width: int) -> np.ndarray:
    """A (h, w) token map resized bilinearly to (height, width) (half-pixel centres, no corner alignment)."""
    if token_map.dim() != 2:
        raise ConfigError(f"a token map must be 2-D (h, w); got shape {tuple(token_map.shape)}")
    x = token_map.detach().float().cpu()[None, None]
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


def layer_names(config: dict[str, Any]) -> list[str]:
    """The layer names a metric's config lists (``layer``: one name or several)."""
    layer = config.get("layer", [])
    return [str(layer)] if isinstance(layer, (str, int)) else [str(x) for x in layer]


def pair_maps(metric: Any, a: ImageLike, b: ImageLike, layer: str | None = None) -> PairMaps:
    """Embed A and B once and take their token maps and score on ``layer`` (a metric with ``token_maps``)."""
    if not hasattr(metric, "token_maps"):
        raise ConfigError(
            f"metric {getattr(metric, 'name', type(metric).__name__)!r} has no per-token maps; "
            "similarity maps need a DiffSim-S metric (e.g. --metric diffsim-s)"
        )
    cfg = metric.config
    names = layer_names(cfg)
    if layer is None and len(names) > 1:
        raise ConfigError(f"this metric has {len(names)} layers ({', '.join(map(str, names))}); choose one to map")
    feats = metric.embed([a, b])  # one batch: the pair is embedded once
    fa, fb = feats[:1], feats[1:]
    ma, mb = metric.token_maps(fa, fb, layer)
    score = float(metric.compare(fa, fb, layer=layer)[0])
    return PairMaps(
        ma[0],
        mb[0],
        score,
        str(layer if layer is not None else names[0] if names else "?"),
        str(getattr(metric, "name", cfg.get("metric", "metric"))),
        bool(metric.higher_is_better),
        cfg.get("step"),
    )


def overlay_figure(
    image_a: ImageLike,
    image_b: ImageLike,
    maps: PairMaps,
    crop: str = "none",
    vmin: float | None = None,
    vmax: float | None = None,
    alpha: float = 0.5,
    names: tuple[str, str] | None = None,
    note: str | None = None,
) -> Any:
    """Both images side by side with their token maps overlaid (shared colour scale, one colour bar).

    The colour scale defaults to the range of both maps together; pass ``vmin``/``vmax`` (e.g. 0 and 1)
    to compare figures with each other. ``note`` adds a small line under the title.
    """
    views = [model_view(image_a, crop, 0), model_view(image_b, crop, 1)]
    ups = [upsample(m, v.height, v.width) for m, v in zip((maps.map_a, maps.map_b), views, strict=False)]
    lo, hi = map_range([maps.map_a, maps.map_b])
    lo, hi = lo if vmin is None else vmin, hi if vmax is None else vmax
    names = names or (describe(image_a, 0), describe(image_b, 1))
    fig = new_figure(*MAP_SIZE)
    h, w = maps.map_a.shape
    step = f" · step {maps.step}" if maps.step is not None else ""
    polarity = "higher = more similar" if maps.higher_is_better else "lower = more similar"
    fig.suptitle(
        f"{maps.metric} score {maps.score:.4f} ({polarity}) · layer {maps.layer} ({h}×{w} tokens){step}",
        fontsize=12,
        y=0.965,
    )
    if note:
        fig.text(0.5, 0.905, note, ha="center", va="center", fontsize=8, style="italic")
    image = None
    for i, (view, up, name, side) in enumerate(zip(views, ups, names, "AB", strict=False)):
        ax = fig.add_axes((0.02 + 0.43 * i, 0.04, 0.41, 0.80))
        ax.imshow(np.asarray(view), interpolation="lanczos")
        image = ax.imshow(
            up,
            cmap=CMAP,
            vmin=lo,
            vmax=hi,
            alpha=alpha,
            interpolation="nearest",
            extent=(-0.5, view.width - 0.5, view.height - 0.5, -0.5),
        )
        ax.set_axis_off()
        other = "B" if side == "A" else "A"
        ax.set_title(f"{side}: {os.path.basename(name)}\n{side}'s tokens aligned to {other}", fontsize=9)
    cax = fig.add_axes((0.875, 0.10, 0.018, 0.68))
    cbar = fig.colorbar(image, cax=cax)
    cbar.set_label("per-token cosine (AAS)", fontsize=9)
    plain_colorbar(cbar, lo, hi)
    return fig


def map_range(maps: Sequence[torch.Tensor]) -> tuple[float, float]:
    """The shared colour range of several token maps (widened slightly when they are constant)."""
    lo = min(float(m.min()) for m in maps)
    hi = max(float(m.max()) for m in maps)
    return (lo - 1e-6, hi + 1e-6) if hi <= lo else (lo, hi)


def overlay_pil(
    image: ImageLike,
    token_map: torch.Tensor,
    vmin: float,
    vmax: float,
    crop: str = "none",
    alpha: float = 0.5,
    index: int = 0,
) -> Image.Image:
    """One image with its token map blended over it (the figure's colour map), as an RGB PIL image."""
    mpl = require("matplotlib", "plots", "map overlays")
    view = model_view(image, crop, index)
    up = upsample(token_map, view.height, view.width)
    scaled = np.clip((up - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    heat = (mpl.colormaps[CMAP](scaled)[..., :3] * 255).round().astype(np.uint8)
    return Image.blend(view.convert("RGB"), Image.fromarray(heat), alpha)


def similarity_overlay(metric: Any, a: ImageLike, b: ImageLike, layer: str | None = None, **style: Any) -> Image.Image:
    """The map figure of two images as an RGB PIL image (1000 x 540 px); ``style``: see overlay_figure."""
    maps = pair_maps(metric, a, b, layer)
    return to_pil(overlay_figure(a, b, maps, metric.config.get("crop", "none"), **style))


def save_similarity_map(
    metric: Any, a: ImageLike, b: ImageLike, path: str | os.PathLike, layer: str | None = None, **style: Any
) -> tuple[Path, PairMaps]:
    """Write the map figure of two images as a PNG; returns the path and the maps drawn."""
    maps = pair_maps(metric, a, b, layer)
    return save(overlay_figure(a, b, maps, metric.config.get("crop", "none"), **style), path), maps
