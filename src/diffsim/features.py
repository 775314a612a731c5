"""A batch of per-image features: named tensors sharing a leading image dimension.

Metrics return :class:`Features` from ``embed`` and consume them in ``compare``; the cache stores
one-image slices of them. They are plain tensors, so they can be saved (safetensors), moved and
concatenated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import ImageError


@dataclass
class Features:
    """Named tensors ``(N, ...)`` for N images, the metric config that made them, and image names."""

    tensors: dict[str, torch.Tensor]
    config: Mapping[str, object] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        sizes = {t.shape[0] for t in self.tensors.values()}
        if len(sizes) > 1:
            raise ValueError(f"feature tensors disagree on the number of images: {sorted(sizes)}")
        if not self.names:
            self.names = [f"#{i}" for i in range(len(self))]

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0] if self.tensors else 0

    def __getitem__(self, index: int | slice | list[int]) -> Features:
        if isinstance(index, int):
            index = slice(index, index + 1) if index != -1 else slice(-1, None)
        if isinstance(index, slice):
            names = self.names[index]
        else:
            names = [self.names[i] for i in index]
        return Features({k: v[index] for k, v in self.tensors.items()}, self.config, names)

    def to(self, device: torch.device | str) -> Features:
        return Features({k: v.to(device) for k, v in self.tensors.items()}, self.config, list(self.names))

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    @staticmethod
    def cat(parts: Iterable[Features]) -> Features:
        parts = list(parts)
        if not parts:
            raise ValueError("cannot concatenate an empty list of features")
        keys = parts[0].tensors.keys()
        for k in keys:
            shapes = {tuple(p.tensors[k].shape[1:]) for p in parts}
            if len(shapes) > 1:
                raise ImageError(
                    f"features of different shapes {' and '.join(map(str, sorted(shapes)[:2]))}: images of "
                    "different sizes at their own resolution cannot be compared; give a size (--set size=N) "
                    "to resize them to one"
                )
        tensors = {k: torch.cat([p.tensors[k] for p in parts]) for k in keys}
        return Features(tensors, parts[0].config, [n for p in parts for n in p.names])

    def save(self, path: str | Path) -> None:
        """Write to a safetensors file (the config is kept as JSON metadata)."""
        meta = {"config": json.dumps(dict(self.config), sort_keys=True), "names": json.dumps(self.names)}
        save_file({k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> Features:
        """Read a file written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
        return cls(tensors, json.loads(meta.get("config", "{}")), json.loads(meta.get("names", "[]")))
