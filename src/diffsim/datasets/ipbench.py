"""IP bench (DiffSim authors): original character vs two IP-Adapter variants; higher weight is closer.

``paper``: ``repeats`` (5) random pairs of distinct weights per class.
``script``: the five fixed weight pairs of ``ipref_main.py``.
Variants are ``IPref/<cls>/<weight>.png``; the original is ``<cls>.JPG`` (any case) in a second root
(``original_root`` option, default ``../IPA-bench`` beside the root).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import (
    DatasetSpec,
    Triplet,
    TripletSet,
    check_options,
    is_image,
    layout_error,
    list_dirs,
    list_images,
    opt_int,
    rel,
    require_dir,
    rng,
)

LAYOUT = """\
IPref/<cls>/1.0.png 0.8.png 0.6.png 0.4.png 0.35.png 0.3.png 0.2.png    (file name = IP weight)
IPA-bench/<cls>.JPG                                                     (original; option original_root)
"""
OPTIONS = {
    "original_root": "folder of the originals <cls>.JPG (default: IPA-bench beside the root)",
    "repeats": "random pairs per class for the paper protocol (default 5)",
}
SCRIPT_PAIRS = [(1.0, 0.6), (0.8, 0.4), (0.6, 0.3), (0.4, 0.35), (0.3, 0.2)]


def _weights(folder: Path) -> dict[float, Path]:
    out = {}
    for p in list_images(folder):
        try:
            out[float(p.stem)] = p
        except ValueError:
            continue
    return out


def _originals(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and is_image(p.name):
            out.setdefault(p.stem, p)
    return out


def build(root: Path, protocol: str = "paper", seed: int = 0, options: dict[str, Any] | None = None) -> TripletSet:
    options = dict(options or {})
    check_options("ipbench", options, OPTIONS)
    require_dir("ipbench", root, LAYOUT)
    orig_root = Path(options.get("original_root") or root.parent / "IPA-bench")
    require_dir("ipbench", orig_root, LAYOUT, "folder of original images not found (option original_root)")
    repeats = opt_int(options, "repeats", 5)
    originals = _originals(orig_root)
    r = rng(seed)
    triplets: list[Triplet] = []
    notes: list[str] = []
    classes = [d for d in list_dirs(root) if _weights(d)]
    if not classes:
        raise layout_error("ipbench", root, "no <cls>/<weight>.png images found", LAYOUT)
    for d in classes:
        cls, w = d.name, _weights(d)
        if cls not in originals:
            notes.append(f"{cls}: no original {cls}.JPG in {orig_root}; skipped")
            continue
        pairs: list[tuple[float, ...]]
        if protocol == "script":
            pairs = [(hi, lo) for hi, lo in SCRIPT_PAIRS if hi in w and lo in w]
            if len(pairs) < len(SCRIPT_PAIRS):
                notes.append(f"{cls}: {len(SCRIPT_PAIRS) - len(pairs)} fixed pair(s) missing")
        else:
            pairs = [tuple(sorted(r.sample(sorted(w), 2), reverse=True)) for _ in range(repeats)] if len(w) >= 2 else []
        for k, (hi, lo) in enumerate(pairs):
            triplets.append(
                Triplet(
                    f"{cls}/{k}",
                    rel(originals[cls], root),
                    rel(w[hi], root),
                    rel(w[lo], root),
                    None,
                    {"weights": [hi, lo]},
                )
            )
    opts: dict[str, Any] = {"original_root": str(orig_root)}
    if protocol == "paper":
        opts["repeats"] = repeats
    return TripletSet("ipbench", protocol, str(root), seed, opts, triplets, notes)


SPEC = DatasetSpec(
    "ipbench",
    "IP bench: IP-Adapter weight variants of 299 characters",
    LAYOUT,
    "2afc",
    build,
    ("paper", "script"),
    OPTIONS,
    "diffsim-s-instance",
    1495,
)
