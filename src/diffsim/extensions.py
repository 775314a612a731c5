"""The one list of file extensions read as images (gallery folders, benchmark folders); imports nothing heavy."""

from __future__ import annotations

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
