"""Example images for the web app: found in a folder, grouped into pair, ranking and 2AFC examples.

Images whose names share the part before the first ``_`` show one scene (``boat_day.png``, ``boat_sunset.png``),
so a pair example is two images of one scene, and a 2AFC example puts an image of the same scene against
one of another scene.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
MAX_EXAMPLES = 4  # rows per tab


def repository_examples() -> Path | None:
    """The repository's ``examples/`` folder when diffsim runs from a checkout (not from a wheel), else None."""
    folder = Path(__file__).resolve().parents[3] / "examples"
    return folder if folder.is_dir() else None


def find_images(folder: str | os.PathLike | None) -> list[str]:
    """Image files under ``folder`` (recursive, sorted by file name, then path); none for ``None``."""
    if folder is None:
        return []
    root = Path(folder)
    found = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return [str(p) for p in sorted(found, key=lambda p: (p.name, str(p)))]


def _scene(path: str) -> str:
    return Path(path).stem.split("_")[0]


@dataclass(frozen=True)
class ExampleSets:
    """Inputs for each tab: pairs (A, B), rankings (reference, candidates) and 2AFC (reference, A, B)."""

    pairs: list[list[str]]
    rankings: list[list[object]]
    twoafc: list[list[str]]


def example_sets(images: list[str], limit: int = MAX_EXAMPLES) -> ExampleSets:
    """Group ``images`` into examples for every tab (empty lists when fewer than 2 or 3 images)."""
    scenes: dict[str, list[str]] = {}
    for p in images:
        scenes.setdefault(_scene(p), []).append(p)
    groups = sorted((g for g in scenes.values() if len(g) >= 2), key=lambda g: (-len(g), g[0]))
    pairs = [g[:2] for g in groups]
    if not pairs and len(images) >= 2:
        pairs = [images[:2]]
    rankings: list[list[object]] = []
    twoafc: list[list[str]] = []
    for g in groups:
        others = [p for p in images if p not in g]
        if others:
            rankings.append([g[0], [*g[1:], *others]])
            twoafc.append([g[0], g[1], others[len(twoafc) % len(others)]])
    if not rankings and len(images) >= 3:
        rankings, twoafc = [[images[0], images[1:]]], [images[:3]]
    return ExampleSets(pairs[:limit], rankings[:limit], twoafc[:limit])
