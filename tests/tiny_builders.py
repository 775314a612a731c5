"""A tiny random-weight model per registered model kind: the tests enumerate backbones from this table.

Each row names a kind of :mod:`diffsim.backbones.kinds` and how to build a tiny model of it with the real
diffusers/transformers classes (saved with ``save_pretrained``). The contract test
(``test_backbone_contract.py``), the golden Q/K/V fingerprints (``golden/compute.py``) and the conftest
fixtures read it, and ``test_every_kind_has_a_tiny_model`` fails for a registered kind without a row.
A tiny-model module registers its row with :func:`register_tiny` (the ``tests/tiny_*.py`` files that do
are imported when the table is first read); a test may register a throw-away one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffsim.backbones.kinds import kind_info
from diffsim.backbones.protocol import TextCondition


@dataclass(frozen=True)
class TinyBackbone:
    """How to build and load a tiny model of kind ``kind``."""

    kind: str
    #: (folder, seed, paths of the models built before) -> the saved folder
    build: Callable[[Path, int, dict[str, str]], Path]
    key: str  # its key in the tiny path table (``tiny_model_paths``, golden ``paths``)
    layer: str  # a layer the contract test reads
    golden: str = ""  # its name in fingerprints.json's "qkv" (default: ``key``)
    needs: tuple[str, ...] = ()  # keys of the models it is built on (the IP-Adapter: "sd")
    condition: Any = TextCondition("a photo")
    #: (folder, paths) -> the LoadSpec fields that load it (default: ``{"model": folder}``)
    spec: Callable[[str, dict[str, str]], dict[str, Any]] = lambda folder, paths: {"model": folder}
    #: settings that point its default metric at the tiny model besides model/size/device/dtype
    settings: dict[str, Any] = field(default_factory=dict)
    #: the loss / functional tests (``tests/tiny_loss.py``): its default metric's settings there, over
    #: ``metric_overrides`` (None: its metric is not differentiable and stays out of them)
    loss: dict[str, Any] | None = field(default_factory=dict)
    loss_model: str = ""  # a session fixture whose folder replaces its tiny model there (SD: the sharpened copy)
    #: False: its float64 copy is not float64 throughout (or too slow), so ``gradcheck`` cannot run on it; the
    #: loss tests check loss = 1 - score, a finite nonzero gradient, batch = single and coarse finite differences
    gradcheck: bool = True

    @property
    def metric(self) -> str:
        name = kind_info(self.kind).metric
        assert name, f"kind {self.kind!r} has no default metric"
        return name

    def metric_overrides(self, paths: dict[str, str], size: int) -> dict[str, Any]:
        """Settings of its default metric on the tiny model."""
        return {**self.spec(paths[self.key], paths), "size": size, "device": "cpu", "dtype": "float32", **self.settings}


_TINY: dict[str, TinyBackbone] = {}
_discovered = False


def register_tiny(row: TinyBackbone) -> TinyBackbone:
    _TINY[row.kind] = row
    return row


def unregister_tiny(kind: str) -> None:
    _TINY.pop(kind, None)


def tiny_backbones() -> dict[str, TinyBackbone]:
    """{kind: row}, built-in rows first (imported once from the tests/tiny_*.py files that register one)."""
    global _discovered
    if not _discovered:
        _discovered = True
        here = Path(__file__).parent
        for f in sorted(here.glob("tiny_*.py")):
            if f.stem != "tiny_builders" and "register_tiny(" in f.read_text(encoding="utf-8"):
                importlib.import_module(f"{__package__}.{f.stem}")
    return dict(_TINY)


def golden_name(row: TinyBackbone) -> str:
    return row.golden or row.key


def build_tiny(row: TinyBackbone, root: Path, seed: int, built: dict[str, str]) -> Path:
    """Build ``row``'s model (and, first, the models it needs, into ``built``) under ``root``."""
    for need in row.needs:
        if need not in built:
            dep = next(r for r in tiny_backbones().values() if r.key == need)
            built[need] = str(build_tiny(dep, root, seed, built))
    return row.build(root / f"tiny-{row.key}" / "model", seed, built)


def build_all(root: Path, built: dict[str, str] | None = None) -> dict[str, str]:
    """Every registered tiny backbone under ``root`` (those in ``built`` are reused): {key: folder}."""
    out = dict(built or {})
    for row in tiny_backbones().values():
        if row.key not in out:
            out[row.key] = str(build_tiny(row, root, 0, out))
    return out
