"""What a gallery holds: a folder walked recursively, a list file, or explicit image paths.

Every image gets a stable id: its path relative to the gallery root (POSIX separators) when the gallery
is a folder or a list file, else its absolute path. Folders are walked in sorted order (hidden files and
folders skipped); only files with an image extension are taken.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImageError
from ..extensions import IMAGE_EXTENSIONS

__all__ = ["IMAGE_EXTENSIONS", "Source", "Sources", "collect", "explicit", "is_image", "read_list", "walk_folder"]
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})


@dataclass(frozen=True)
class Source:
    """One gallery image: its stable ``id`` and the file to read."""

    id: str
    path: str  # absolute

    @property
    def label(self) -> str | None:
        """The class of the image when the gallery has one folder per class (the id's first folder)."""
        head, sep, _ = self.id.partition("/")
        return head if sep and not os.path.isabs(self.id) else None


@dataclass(frozen=True)
class Sources:
    """The images of a gallery in a fixed order, and the folder their ids are relative to (None: absolute)."""

    items: tuple[Source, ...]
    root: str | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self.items]


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def walk_folder(folder: str | os.PathLike) -> Sources:
    """Every image under ``folder`` (recursively, sorted by relative path); ids relative to ``folder``."""
    root = Path(folder).resolve()
    found: list[Source] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not is_image(name):
                continue
            full = Path(dirpath) / name
            found.append(Source(full.relative_to(root).as_posix(), str(full)))
    found.sort(key=lambda s: s.id.split("/"))
    return Sources(tuple(found), str(root))


def read_list(list_file: str | os.PathLike) -> Sources:
    """One image path per line (blank lines and ``#`` comments skipped), relative to the list's folder."""
    lf = Path(list_file).resolve()
    root = lf.parent
    items: list[Source] = []
    seen: set[str] = set()
    for _n, line in enumerate(lf.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        p = Path(text)
        full = (p if p.is_absolute() else root / p).resolve()
        try:
            sid = full.relative_to(root).as_posix()
        except ValueError:
            sid = str(full)
        if sid in seen:
            continue
        seen.add(sid)
        items.append(Source(sid, str(full)))
    return Sources(tuple(items), str(root))


def explicit(paths: Sequence[str | os.PathLike]) -> Sources:
    """The given image files, ids = absolute paths (each must exist)."""
    items, seen = [], set()
    for p in paths:
        full = str(Path(p).resolve())
        if not os.path.isfile(full):
            raise ImageError(f"image not found: {p}")
        if full not in seen:
            seen.add(full)
            items.append(Source(full, full))
    return Sources(tuple(items), None)


def collect(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> Sources:
    """A gallery from one folder, one list file (``.txt``/``.lst``/``.list``), or image paths."""
    given = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not given:
        raise ImageError("no gallery given: pass a folder, a list file or image paths")
    if len(given) == 1:
        p = Path(given[0])
        if p.is_dir():
            return walk_folder(p)
        if p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            return read_list(p)
        if not p.exists():
            raise ImageError(f"gallery not found: {p} (expected a folder, a list file or image files)")
    return explicit(given)
