"""Image arguments of the CLI: files as given, folders expanded to the images they hold."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def expand_images(items: Iterable[str]) -> list[str]:
    """Each file as given; each folder replaced by its image files (sorted by name, not recursive)."""
    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageError(f"no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) in folder {p}")
            out += found
        elif p.exists():
            out.append(item)
        else:
            raise ImageError(f"image file or folder not found: {p}")
    return out
