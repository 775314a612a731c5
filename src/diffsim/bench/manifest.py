"""Triplet manifests: the exact triplet set of a run as JSON, to evaluate the same set with another metric."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..datasets.base import Triplet, TripletSet
from ..errors import DatasetError

FORMAT = "diffsim-triplets/1"


def triplets_hash(triplets: list[Triplet]) -> str:
    """A short hash of the triplets (ids, paths, prompts): equal sets give equal hashes on every machine."""
    h = hashlib.sha256()
    for t in triplets:
        h.update(json.dumps([t.id, t.anchor, t.positive, t.negative, t.prompt]).encode())
    return h.hexdigest()[:16]


def save_manifest(ts: TripletSet, path: str | os.PathLike) -> Path:
    """Write the triplet set (paths relative to its root) to ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": FORMAT,
        "dataset": ts.dataset,
        "protocol": ts.protocol,
        "options": ts.options,
        "seed": ts.seed,
        "root": ts.root,
        "n_triplets": len(ts.triplets),
        "hash": triplets_hash(ts.triplets),
        "notes": ts.notes,
        "triplets": [t.to_json() for t in ts.triplets],
    }
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, p)
    return p


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file; a missing or unreadable one raises :class:`DatasetError` naming ``what`` and the path."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{what} not found: {path}") from None
    except UnicodeDecodeError:
        raise DatasetError(f"cannot read {what} {path}: not a JSON text file (binary data)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {what} {path}: {exc}") from None


def load_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None) -> TripletSet:
    """Read a manifest; ``root`` overrides the root it was written with (the data moved)."""
    p = Path(path)
    doc = read_json(p, "triplet manifest")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("triplets"), list):
        raise DatasetError(f"{p} is not a diffsim triplet manifest (format {FORMAT!r})")
    triplets = [Triplet.from_json(d) for d in doc["triplets"]]
    if doc.get("hash") and doc["hash"] != triplets_hash(triplets):
        raise DatasetError(f"triplet manifest {p} was edited: its hash does not match its triplets")
    base = str(Path(root).expanduser().resolve()) if root is not None else doc.get("root", ".")
    return TripletSet(
        doc.get("dataset", "custom"),
        doc.get("protocol", "manifest"),
        base,
        int(doc.get("seed", 0)),
        dict(doc.get("options") or {}),
        triplets,
        list(doc.get("notes") or []),
    )
