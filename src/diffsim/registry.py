"""Metric registry: names -> factories with metadata, like ``pyiqa.create_metric`` / ``list_models``.

Each entry declares its backbone, defaults, polarity and what it measures, so benchmarks, sweeps and
retrieval can build any metric by name and read how to interpret its scores.
"""
from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .metrics.base import Metric


@dataclass(frozen=True)
class MetricInfo:
    """What a registered metric is and how it is built."""

    name: str
    factory: Callable[..., Metric]
    description: str
    backbone: str
    higher_is_better: bool = True
    measures: tuple[str, ...] = ()
    paper: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, MetricInfo] = {}


def register_metric(info: MetricInfo, overwrite: bool = False) -> MetricInfo:
    """Add a metric to the registry (``overwrite=True`` to replace an existing name)."""
    if info.name in _REGISTRY and not overwrite:
        raise ConfigError(f"metric {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def list_metrics(pattern: str = "*") -> list[str]:
    """Registered metric names matching a glob pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def metric_info(name: str) -> MetricInfo:
    """The registry entry for ``name``; unknown names get close-match suggestions."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown metric {name!r}.{hint} Available: {', '.join(list_metrics())} "
                          "(`diffsim list`).")
    return _REGISTRY[name]


def create_metric(name: str, **overrides: Any) -> Metric:
    """Build metric ``name`` with its registered defaults, updated by ``overrides``."""
    info = metric_info(name)
    kwargs = dict(info.defaults)
    kwargs.update(overrides)
    return info.factory(**kwargs)


def _diffsim_factory(**kw: Any) -> Metric:
    from .metrics.diffsim_s import DiffSim

    return DiffSim.from_pretrained(**kw)


PAPER = "Song et al., DiffSim, ICCV 2025"
_DIFFSIM_PRESETS = {
    "diffsim-s": ({}, "DiffSim-S, general setting: up0 at paper step 500", ("human-aligned",)),
    "diffsim-s-style": ({"step": 900}, "DiffSim-S for style (Sref, InstantStyle, TID2013): up0 at step 900",
                        ("style", "low-level")),
    "diffsim-s-nights": ({"step": 500}, "DiffSim-S for NIGHTS: up0 at step 500", ("human-aligned",)),
    "diffsim-s-instance": ({"step": 750}, "DiffSim-S for instances (DreamBench++, IP): up0 at step 750",
                           ("instance",)),
    "diffsim-s-cute": ({"step": 600}, "DiffSim-S for CUTE: up0 at step 600", ("instance",)),
}
for _name, (_over, _desc, _measures) in _DIFFSIM_PRESETS.items():
    register_metric(MetricInfo(
        name=_name, factory=_diffsim_factory, description=_desc,
        backbone="stable-diffusion-v1-5/stable-diffusion-v1-5", higher_is_better=True, measures=_measures,
        paper=PAPER, defaults={"layer": "up0", **_over}))
