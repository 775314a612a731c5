"""Rewrite ``tests/golden/fingerprints.json`` from the current code: ``python -m tests.golden.regenerate``.

Run it only when a change is *meant* to move the numbers, and say why in the commit message.
``--note "why"`` stores the reason in the file.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from diffsim import list_metrics

from .compute import FILE, QKV_ATOL, SCORE_ATOL, SCORE_RTOL, build_paths, compute


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--note", default="", help="why the numbers moved (kept in the file)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="diffsim-golden-") as tmp:
        paths = build_paths(Path(tmp))
        data = compute(paths, list_metrics())
    doc = {
        "about": "Scores of tests/golden/compute.py:PAIRS per registered metric on the tiny models, and Q/K/V "
        "values per backbone. Regenerate: python -m tests.golden.regenerate --note 'why'",
        "note": args.note,
        "made_with": {"torch": torch.__version__, "python": platform.python_version()},
        "tolerance": {"score_atol": SCORE_ATOL, "score_rtol": SCORE_RTOL, "qkv_atol": QKV_ATOL},
        **data,
    }
    FILE.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {FILE} ({len(data['scores'])} metrics, {len(data['qkv'])} backbones)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
