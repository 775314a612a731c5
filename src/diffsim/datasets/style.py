"""Style benches (Sref, InstantStyle): two images of one style vs one of another style.

Every folder under the root (any depth, the root itself excluded) holding at least two images is a
style. ``n`` (2,000) triplets are drawn with replacement: styles (S, T) distinct, A and B distinct
images of S, C an image of T, exactly as the paper and ``style_main.py`` describe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import (
    DatasetSpec,
    Triplet,
    TripletSet,
    check_options,
    layout_error,
    list_images,
    opt_int,
    rel,
    require_dir,
    rng,
)

LAYOUT = """\
<root>/
└── <style>/          one folder per style (any depth), >= 2 images each
    └── *.png | *.jpg
"""
OPTIONS = {"n": "number of triplets (default 2000)"}


def styles(root: Path) -> dict[str, list[Path]]:
    """Style folder (relative name) -> its images, for every folder below ``root`` with >= 2 images."""
    out: dict[str, list[Path]] = {}
    for d in sorted(
        p for p in root.rglob("*") if p.is_dir() and not any(s.startswith(".") for s in p.relative_to(root).parts)
    ):
        ims = list_images(d)
        if len(ims) >= 2:
            out[rel(d, root)] = ims
    return out


def build_style(
    name: str, root: Path, protocol: str = "paper", seed: int = 0, options: dict[str, Any] | None = None
) -> TripletSet:
    options = dict(options or {})
    check_options(name, options, OPTIONS)
    require_dir(name, root, LAYOUT)
    n = opt_int(options, "n", 2000)
    st = styles(root)
    if len(st) < 2:
        raise layout_error(name, root, f"found {len(st)} style folder(s) with >= 2 images; need at least 2", LAYOUT)
    names = sorted(st)
    r = rng(seed)
    triplets = []
    for i in range(n):
        s, t = r.sample(names, 2)
        a, b = r.sample(st[s], 2)
        c = r.choice(st[t])
        triplets.append(Triplet(str(i), rel(a, root), rel(b, root), rel(c, root), None, {"styles": [s, t]}))
    return TripletSet(name, protocol, str(root), seed, {"n": n}, triplets, [f"{len(st)} styles"])


def build_sref(root: Path, protocol: str = "paper", seed: int = 0, options: dict[str, Any] | None = None):
    return build_style("sref", root, protocol, seed, options)


def build_instantstyle(root: Path, protocol: str = "paper", seed: int = 0, options: dict[str, Any] | None = None):
    return build_style("instantstyle", root, protocol, seed, options)


SREF = DatasetSpec(
    "sref",
    "Sref bench: 508 Midjourney --sref styles x 4 images",
    LAYOUT,
    "2afc",
    build_sref,
    ("paper",),
    OPTIONS,
    "diffsim-s-style",
    2000,
)
INSTANTSTYLE = DatasetSpec(
    "instantstyle",
    "InstantStyle bench (generic one folder per style)",
    LAYOUT,
    "2afc",
    build_instantstyle,
    ("paper",),
    OPTIONS,
    "diffsim-s-style",
    2000,
)
