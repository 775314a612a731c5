"""Pictures (needs the ``plots`` extra: matplotlib): similarity-map overlays and score-matrix heat maps.

Figures are drawn on matplotlib's Agg canvas without pyplot, so they work headless and in servers.
"""

from .contrast import contrast_ratio, text_colour
from .figure import DPI, new_figure, save, to_pil
from .maps import (
    PairMaps,
    layer_names,
    map_range,
    overlay_figure,
    overlay_pil,
    pair_maps,
    save_similarity_map,
    similarity_overlay,
    upsample,
)
from .matrix import (
    ScoreMatrix,
    figure_size,
    matrix_figure,
    matrix_image,
    save_matrix,
    score_matrix,
    write_csv,
    write_csv_stream,
)

__all__ = [
    "DPI",
    "PairMaps",
    "ScoreMatrix",
    "contrast_ratio",
    "figure_size",
    "layer_names",
    "map_range",
    "matrix_figure",
    "matrix_image",
    "new_figure",
    "overlay_figure",
    "overlay_pil",
    "pair_maps",
    "save",
    "save_matrix",
    "save_similarity_map",
    "score_matrix",
    "similarity_overlay",
    "text_colour",
    "to_pil",
    "upsample",
    "write_csv",
    "write_csv_stream",
]
