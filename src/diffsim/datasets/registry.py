"""Benchmark registry: ``list_datasets()``, ``dataset_spec(name)``, ``load_dataset(name, root, ...)``."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .base import DatasetSpec, TripletSet, VideoSet
from .cute import SPEC as CUTE
from .dreambench import SPEC as DREAMBENCH
from .ipbench import SPEC as IPBENCH
from .nights import SPEC as NIGHTS
from .style import INSTANTSTYLE, SREF
from .tid2013 import SPEC as TID2013
from .tiktok import SPEC as TIKTOK

_DATASETS: dict[str, DatasetSpec] = {
    s.name: s for s in (NIGHTS, DREAMBENCH, CUTE, IPBENCH, TID2013, SREF, INSTANTSTYLE, TIKTOK)
}


def list_datasets() -> list[str]:
    """Registered benchmark names, in the paper's Table 1 order (TikTok last)."""
    return list(_DATASETS)


def dataset_spec(name: str) -> DatasetSpec:
    if name not in _DATASETS:
        close = difflib.get_close_matches(name, list(_DATASETS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DatasetError(f"unknown dataset {name!r}.{hint} Available: {', '.join(_DATASETS)}")
    return _DATASETS[name]


def load_dataset(
    name: str, root: str | os.PathLike, protocol: str = "paper", seed: int = 0, options: dict[str, Any] | None = None
) -> TripletSet | VideoSet:
    """The triplets (or videos) of benchmark ``name`` read from ``root`` under ``protocol``."""
    spec = dataset_spec(name)
    if protocol not in spec.protocols:
        raise DatasetError(f"{name}: unknown protocol {protocol!r}; available: {', '.join(spec.protocols)}")
    return spec.build(Path(root).expanduser().resolve(), protocol, seed, dict(options or {}))
