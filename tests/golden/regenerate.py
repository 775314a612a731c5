"""Rewrite ``tests/golden/fingerprints.json`` from the current code: ``python -m tests.golden.regenerate``.

Run it only when a change is *meant* to move the numbers, and say why in the commit message.
``--note "why"`` appends the reason (with the date and torch version) to the file's history of notes;
earlier notes are kept.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from diffsim import list_metrics

from .compute import FILE, QKV_ATOL, SCORE_ATOL, SCORE_RTOL, build_paths, compute


def notes_history(previous: dict[str, Any], note: str) -> list[dict[str, str]]:
    """The previous file's notes (a single old-style ``note`` becomes the first entry) plus ``note``."""
    notes = list(previous.get("notes", []))
    if not notes and previous.get("note"):
        notes.append({"note": previous["note"], "torch": previous.get("made_with", {}).get("torch", "")})
    if note:
        notes.append({"note": note, "date": datetime.date.today().isoformat(), "torch": torch.__version__})
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--note", default="", help="why the numbers moved (appended to the file's notes)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    previous = json.loads(FILE.read_text()) if FILE.exists() else {}
    with tempfile.TemporaryDirectory(prefix="diffsim-golden-") as tmp:
        paths = build_paths(Path(tmp))
        data = compute(paths, list_metrics())
    doc = {
        "about": "Scores of tests/golden/compute.py:PAIRS per registered metric on the tiny models, and Q/K/V "
        "values per backbone. Regenerate: python -m tests.golden.regenerate --note 'why'",
        "notes": notes_history(previous, args.note),
        "made_with": {"torch": torch.__version__, "python": platform.python_version()},
        "tolerance": {"score_atol": SCORE_ATOL, "score_rtol": SCORE_RTOL, "qkv_atol": QKV_ATOL},
        **data,
    }
    FILE.write_text(json.dumps(doc, indent=1) + "\n")
    took = time.perf_counter() - start
    print(f"wrote {FILE} ({len(data['scores'])} metrics, {len(data['qkv'])} backbones) in {took:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
