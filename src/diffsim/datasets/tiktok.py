"""TikTok dancing videos for the consistency protocol: score(first frame, frame k), variance per video.

``frames`` (10) frames are taken evenly spaced over each video's sorted frames (first and last
included); the variance of the scores of frames 2..K against frame 1 is computed per video, then
averaged over videos (lower is more robust).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import DatasetSpec, VideoSet, check_options, layout_error, list_dirs, list_images, opt_int, rel, require_dir

LAYOUT = """\
TikTok_dataset/
└── 00001/            one folder per video (also accepted: TikTok_dataset/TikTok_dataset/...)
    ├── images/0001.png 0002.png ...     (frames; without images/ the video folder's own images are used)
    └── masks/ ...                       (ignored)
"""
OPTIONS = {"frames": "frames sampled per video (default 10)"}


def even_indices(n: int, k: int) -> list[int]:
    """``k`` indices evenly spaced over ``range(n)``, first and last included (all of them if n <= k)."""
    if n <= k:
        return list(range(n))
    return [round(i * (n - 1) / (k - 1)) for i in range(k)]


def build(root: Path, protocol: str = "paper", seed: int = 0, options: dict[str, Any] | None = None) -> VideoSet:
    options = dict(options or {})
    check_options("tiktok", options, OPTIONS)
    require_dir("tiktok", root, LAYOUT)
    k = opt_int(options, "frames", 10)
    base = root / "TikTok_dataset" if (root / "TikTok_dataset").is_dir() else root
    videos = []
    notes = []
    for v in list_dirs(base):
        frames = list_images(v / "images") if (v / "images").is_dir() else list_images(v)
        if len(frames) < 2:
            notes.append(f"{v.name}: fewer than 2 frames; skipped")
            continue
        videos.append((v.name, [rel(frames[i], root) for i in even_indices(len(frames), k)]))
    if not videos:
        raise layout_error("tiktok", base, "no video folder with frames found", LAYOUT)
    return VideoSet(
        "tiktok", protocol, str(root), {"frames": k, "variance": "population, per video, mean"}, videos, notes
    )


SPEC = DatasetSpec(
    "tiktok",
    "TikTok dance videos: score variance against the first frame",
    LAYOUT,
    "consistency",
    build,
    ("paper",),
    OPTIONS,
    "diffsim-s",
)
