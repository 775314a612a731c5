"""Shared pieces of the benchmark loaders: triplets, listings, layout errors and option parsing.

Every loader sorts its listings and draws from a local ``random.Random(seed)``, so a triplet set
depends only on the files and the seed, never on the filesystem order or the machine.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from ..extensions import IMAGE_EXTENSIONS as _EXTENSIONS

IMAGE_EXTENSIONS = tuple(sorted(_EXTENSIONS))  # the one list (diffsim.images), as str.endswith wants it


@dataclass(frozen=True)
class Triplet:
    """An anchor and two candidates; ``positive`` is the one the ground truth says is closer.

    Paths are relative to the dataset root (POSIX separators) so a manifest travels between machines.
    ``prompt`` is an optional per-triplet text condition (NIGHTS, CUTE) for metrics that accept one.
    """

    id: str
    anchor: str
    positive: str
    negative: str
    prompt: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "anchor": self.anchor,
            "positive": self.positive,
            "negative": self.negative,
        }
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Triplet:
        try:
            return cls(str(d["id"]), d["anchor"], d["positive"], d["negative"], d.get("prompt"), d.get("meta") or {})
        except KeyError as exc:
            raise DatasetError(f"manifest triplet is missing field {exc}: {dict(d)}") from None


@dataclass
class TripletSet:
    """The triplets of one benchmark under one protocol, with what is needed to describe the run."""

    dataset: str
    protocol: str
    root: str
    seed: int
    options: dict[str, Any]
    triplets: list[Triplet]
    notes: list[str] = field(default_factory=list)

    @property
    def protocol_label(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.protocol} ({opts})" if opts else self.protocol


@dataclass
class VideoSet:
    """Frames sampled per video for the consistency (variance) protocol."""

    dataset: str
    protocol: str
    root: str
    options: dict[str, Any]
    videos: list[tuple[str, list[str]]]  # (video id, frame paths relative to root; the first is the anchor)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered benchmark: how to read it and how its results are interpreted."""

    name: str
    description: str
    layout: str
    kind: str  # "2afc" or "consistency"
    build: Callable[..., Any]
    protocols: tuple[str, ...] = ("paper",)
    options: Mapping[str, str] = field(default_factory=dict)  # option name -> help
    default_metric: str = "diffsim-s"
    paper_n: int | None = None


# ----------------------------------------------------------------- listings
def is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``: sorted, extensions matched case-insensitively, hidden files skipped."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p.name))
    except OSError:
        return []


def list_dirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder``, sorted, hidden ones skipped."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with POSIX separators (may start with ``..`` for a second root)."""
    return Path(os.path.relpath(path, root)).as_posix()


def rng(seed: int) -> random.Random:
    """A local generator: the global ``random`` state is never touched."""
    return random.Random(seed)


# ------------------------------------------------------------------- errors
def layout_error(name: str, path: Path, problem: str, layout: str) -> DatasetError:
    return DatasetError(f"{name}: {problem}: {path}\nexpected layout:\n{layout.rstrip()}")


def require_dir(name: str, path: Path, layout: str, what: str = "dataset root not found") -> Path:
    """``path`` if it is a directory, else a :class:`DatasetError` naming it and the expected layout."""
    if not path.is_dir():
        raise layout_error(name, path, what if not path.exists() else "not a directory", layout)
    return path


# ------------------------------------------------------------------ options
def check_options(name: str, given: Mapping[str, Any], allowed: Mapping[str, str]) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise DatasetError(f"{name}: unknown option(s) {', '.join(unknown)}; known: {known}")


def opt_int(options: Mapping[str, Any], key: str, default: int) -> int:
    v = options.get(key, default)
    try:
        return int(v)
    except (TypeError, ValueError):
        raise DatasetError(f"option {key} must be an integer; got {v!r}") from None


def opt_str(options: Mapping[str, Any], key: str, default: str, choices: tuple[str, ...] | None = None) -> str:
    v = str(options.get(key, default))
    if choices is not None and v not in choices:
        raise DatasetError(f"option {key} must be one of {', '.join(choices)}; got {v!r}")
    return v
