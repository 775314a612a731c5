"""TID2013: reference vs two levels of the same distortion type; the lower level is closer.

``paper``: for each (reference, type) two distinct random levels (600 triplets on the full set).
``script``: level 2 vs level 3 for every (reference, type), as ``tid_main.py``.
File names are matched case-insensitively in ``reference_images/``, ``distorted_images/`` or a flat root.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .base import (
    DatasetSpec,
    Triplet,
    TripletSet,
    check_options,
    is_image,
    layout_error,
    opt_str,
    rel,
    require_dir,
    rng,
)

LAYOUT = """\
tid2013/
├── reference_images/   I01.BMP ... I24.BMP, i25.bmp    (any case)
└── distorted_images/   iRR_TT_L.bmp  (RR ref 01-25, TT type 01-24, L level 1-5; any case)
   (or every image in one flat folder, as the authors' script expects)
"""
OPTIONS = {"levels": "'random' (paper) or two levels 'A,B' with A closer (script: 2,3)"}
_REF = re.compile(r"^i(\d\d)\.bmp$", re.IGNORECASE)
_DIST = re.compile(r"^i(\d\d)_(\d\d)_(\d)\.bmp$", re.IGNORECASE)


def _index(root: Path) -> tuple[dict[int, Path], dict[tuple[int, int, int], Path]]:
    refs: dict[int, Path] = {}
    dists: dict[tuple[int, int, int], Path] = {}
    folders = [root / "reference_images", root / "distorted_images", root]
    for folder in folders:
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if not p.is_file() or not is_image(p.name):
                continue
            if m := _REF.match(p.name):
                refs.setdefault(int(m.group(1)), p)
            elif m := _DIST.match(p.name):
                dists.setdefault((int(m.group(1)), int(m.group(2)), int(m.group(3))), p)
    return refs, dists


def build(root: Path, protocol: str = "paper", seed: int = 0, options: dict[str, Any] | None = None) -> TripletSet:
    options = dict(options or {})
    check_options("tid2013", options, OPTIONS)
    require_dir("tid2013", root, LAYOUT)
    levels = opt_str(options, "levels", "random" if protocol == "paper" else "2,3")
    fixed: tuple[int, int] | None = None
    if levels != "random":
        try:
            a, b = (int(x) for x in levels.split(","))
        except ValueError:
            raise layout_error(
                "tid2013", root, f"bad levels option {levels!r} (use 'random' or 'A,B')", LAYOUT
            ) from None
        fixed = (a, b)
    refs, dists = _index(root)
    if not refs or not dists:
        raise layout_error("tid2013", root, "no TID2013 reference or distorted images found", LAYOUT)
    r = rng(seed)
    triplets: list[Triplet] = []
    notes: list[str] = []
    by_pair: dict[tuple[int, int], dict[int, Path]] = {}
    for (ref, typ, lvl), p in sorted(dists.items()):
        by_pair.setdefault((ref, typ), {})[lvl] = p
    for (ref, typ), lv in sorted(by_pair.items()):
        if ref not in refs:
            notes.append(f"no reference image for i{ref:02d}; skipped")
            continue
        if fixed is None:
            if len(lv) < 2:
                continue
            lo, hi = sorted(r.sample(sorted(lv), 2))
        else:
            lo, hi = fixed
            if lo not in lv or hi not in lv:
                notes.append(f"i{ref:02d}_{typ:02d}: level {lo} or {hi} missing; skipped")
                continue
        triplets.append(
            Triplet(
                f"i{ref:02d}_{typ:02d}",
                rel(refs[ref], root),
                rel(lv[lo], root),
                rel(lv[hi], root),
                None,
                {"levels": [lo, hi], "type": typ},
            )
        )
    return TripletSet("tid2013", protocol, str(root), seed, {"levels": levels}, triplets, sorted(set(notes)))


SPEC = DatasetSpec(
    "tid2013",
    "TID2013 distortion levels (lower level is closer)",
    LAYOUT,
    "2afc",
    build,
    ("paper", "script"),
    OPTIONS,
    "diffsim-s-style",
    600,
)
