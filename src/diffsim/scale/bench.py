"""Embed a benchmark's images with the Ray engine into a gallery store, then score locally from it.

:func:`ray_embed_fn` builds (or updates: a rerun embeds nothing) the store ``OUT/features`` from every
image the triplets name and returns the embed function :func:`~diffsim.bench.twoafc.evaluate_2afc`
takes: it reads features from the store instead of running the network.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ImageError
from ..features import Features
from ..gallery.runner import run_build
from ..gallery.sources import Source, Sources
from .inputs import ray_input
from .ray_engine import RayEngine, RayOptions

logger = logging.getLogger(__name__)


def ray_embed_fn(
    metric: Any,
    ts: Any,
    out_dir: str | os.PathLike,
    opts: RayOptions,
    use_prompts: bool = True,
    batch_size: int | None = None,
    progress: bool = False,
) -> Any:
    """Build ``out_dir/features`` with Ray from the images of triplet set ``ts``; an embed function reading it."""
    if use_prompts and getattr(metric, "accepts_prompt", False) and any(t.prompt for t in ts.triplets):
        raise ConfigError(
            f"{ts.dataset} has per-triplet prompts, which --engine ray does not embed (the store holds "
            "one feature set per image): add --no-dataset-prompts (the metric's own prompt is used)"
        )
    root = Path(ts.root)
    paths = dict.fromkeys(str((root / p).resolve()) for t in ts.triplets for p in (t.anchor, t.positive, t.negative))
    present = [p for p in paths if os.path.isfile(p)]  # missing files are recorded by the benchmark itself
    if not present:
        raise ImageError(f"none of the {len(paths)} images of {ts.dataset} exists under {root}")
    sources = Sources(tuple(Source(p, p) for p in present), None)
    inp = ray_input(present, "files", sources)
    report = run_build(inp, Path(out_dir) / "features", metric, RayEngine(opts, batch_size), progress=progress)
    store = report.store
    logger.info(
        "%s: %d images embedded with Ray, %d already in %s", ts.dataset, report.embedded, report.skipped, store.folder
    )
    stored = set(store.ids())
    reasons = {e["path"]: e["reason"] for e in store.errors()}

    def embed(batch: list[str], prompt: str | None = None) -> Features:
        ids = [str(Path(p).resolve()) for p in batch]
        missing = [i for i in ids if i not in stored]
        if missing:
            raise ImageError(reasons.get(missing[0], f"image not in the feature store: {missing[0]}"))
        return store.load(ids)

    return embed
