"""The table of model kinds: one :class:`KindInfo` row per kind of diffusion model DiffSim reads.

A row holds how the kind is recognised (pipeline class names in ``model_index.json``, a rule on the
denoiser's ``config.json``, tensor names of a single ``.safetensors`` file), its description, its
backbone class, the metric ``diffsim.load`` builds for it and, for a kind reached through a load option
(SD + IP-Adapter), the base kind and the option. Detection (:mod:`.detect`), the registry's ``auto``
metric, ``diffsim layers`` and the tests read this table only.

A backbone module registers its own row with :func:`register_kind` when it is imported; the built-in
rows live in the modules of this package that call ``register_kind`` (found by reading their source, so
listing them imports nothing until a kind is first needed). A row registered later for a pipeline name
or config rule that an earlier row also claims is refused (pipeline names) or tried first (config rules,
file keys), except ``fallback`` rows, which are tried last.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

DEFAULT_KIND = "sd"  # the kind assumed when a model's metadata cannot be read (its loader says what is wrong)


@dataclass(frozen=True)
class KindInfo:
    """One kind of model: detection rule, description, backbone class and default metric."""

    name: str
    description: str
    #: the backbone class or its import path ``"module:Class"`` (None: a kind DiffSim cannot use)
    backbone: Any = None
    metric: str | None = None  # what create_metric("auto") builds for it
    metric_hint: str = ""  # how error messages name the fitting metric(s) (default: ``metric``)
    pipelines: tuple[str, ...] = ()  # ``model_index.json`` ``_class_name`` values
    denoiser: str = "unet"  # the subfolder whose ``config.json`` ``config_rule`` reads
    config_rule: Callable[[dict[str, Any]], bool] | None = None
    file_keys: tuple[str, ...] = ()  # keys of diffusers' ``CHECKPOINT_KEY_NAMES`` found in a single file
    fallback: bool = False  # its config rule / file keys are tried after every other row's
    base: str | None = None  # a kind reached from ``base`` when the load option ``option`` is given
    option: str | None = None

    @property
    def backbone_class(self) -> Any:
        if isinstance(self.backbone, str):
            module, _, attr = self.backbone.partition(":")
            return getattr(importlib.import_module(module), attr)
        return self.backbone

    @property
    def fitting_metric(self) -> str | None:
        return self.metric_hint or self.metric


_KINDS: dict[str, KindInfo] = {}
_discovered = False


def register_kind(info: KindInfo, overwrite: bool = False) -> KindInfo:
    """Add a kind to the table (``overwrite=True`` replaces a row of the same name)."""
    if info.name in _KINDS and not overwrite:
        raise ConfigError(f"model kind {info.name!r} is already registered")
    taken = {p: k.name for k in _KINDS.values() if k.name != info.name for p in k.pipelines}
    clash = [p for p in info.pipelines if p in taken]
    if clash:
        raise ConfigError(f"model kind {info.name!r}: pipeline {clash[0]} is already kind {taken[clash[0]]!r}")
    _KINDS[info.name] = info
    return info


def unregister_kind(name: str) -> None:
    """Remove a kind (tests register throw-away kinds)."""
    _KINDS.pop(name, None)


def _discover() -> None:
    """Import the modules of this package that register a kind (once; read from their source first)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    here = Path(__file__).parent
    for mod in pkgutil.iter_modules([str(here)]):
        if mod.name != "kinds" and "register_kind(" in (here / f"{mod.name}.py").read_text(encoding="utf-8"):
            importlib.import_module(f"{__package__}.{mod.name}")


def kinds() -> list[KindInfo]:
    """Every registered kind; detection tries them latest first, ``fallback`` rows last."""
    _discover()
    rows = list(_KINDS.values())[::-1]
    return [k for k in rows if not k.fallback] + [k for k in rows if k.fallback]


def find_kind(name: str | None) -> KindInfo | None:
    _discover()
    return _KINDS.get(name or "")


def kind_info(name: str) -> KindInfo:
    info = find_kind(name)
    if info is None:
        raise ConfigError(f"unknown model kind {name!r}; known: {', '.join(sorted(_KINDS))}")
    return info


def reader_of(kind: str | None) -> KindInfo:
    """The row whose backbone reads ``kind``'s layers: its own, else (no backbone, unreadable metadata) the
    default kind's, whose loader says what is wrong."""
    info = find_kind(kind)
    return info if info is not None and info.backbone is not None else kind_info(DEFAULT_KIND)


def usable_kinds() -> list[KindInfo]:
    """The kinds with a backbone and a metric (what ``diffsim.load`` takes)."""
    return [k for k in kinds() if k.backbone is not None and k.metric is not None]


def denoiser_folders() -> list[str]:
    """The subfolders whose configs identify a kind (``unet`` first: most models have one)."""
    found = {k.denoiser for k in kinds() if k.config_rule is not None}
    return sorted(found, key=lambda f: (f != "unet", f))
