"""NIGHTS (DreamSim): reference + two distortions per row of ``data.csv``, human vote as ground truth.

``paper``: the test split with DreamSim's ``votes >= 6`` filter (the paper's 2,120 triplets).
``script``: ``split == 'val'`` and no vote filter, as the authors' ``night_main.py`` does.
Columns are read by name; the prompt is ``"An image of a {prompt.lower()}"``.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from .base import DatasetSpec, Triplet, TripletSet, check_options, layout_error, opt_int, opt_str, require_dir

logger = logging.getLogger(__name__)

LAYOUT = """\
nights/
├── data.csv        columns by name: id, ref_path, left_path, right_path, left_vote, votes, prompt, split
├── ref/000/000.png ...
└── distort/000/000_0.png, 000_1.png ...
"""
REQUIRED = ("ref_path", "left_path", "right_path", "left_vote", "split")
OPTIONS = {
    "split": "train, val or test (paper: test, script: val)",
    "min_votes": "keep rows with votes >= N (paper: 6, script: 0)",
}
PROMPT = "An image of a {}"


def build(root: Path, protocol: str = "paper", seed: int = 0, options: dict[str, Any] | None = None) -> TripletSet:
    options = dict(options or {})
    check_options("nights", options, OPTIONS)
    require_dir("nights", root, LAYOUT)
    csv_path = root / "data.csv"
    if not csv_path.is_file():
        raise layout_error("nights", csv_path, "data.csv not found", LAYOUT)
    split = opt_str(options, "split", "test" if protocol == "paper" else "val")
    min_votes = opt_int(options, "min_votes", 6 if protocol == "paper" else 0)
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise layout_error("nights", csv_path, f"data.csv lacks column(s) {', '.join(missing)}", LAYOUT)
        rows = list(reader)
    splits = Counter(r["split"] for r in rows)
    logger.info("nights: %s rows per split", dict(sorted(splits.items())))
    triplets = []
    for i, r in enumerate(rows):
        if r["split"] != split:
            continue
        if min_votes and "votes" in r and int(float(r["votes"] or 0)) < min_votes:
            continue
        left = int(r["left_vote"]) == 1
        pos, neg = (r["left_path"], r["right_path"]) if left else (r["right_path"], r["left_path"])
        prompt = PROMPT.format(r["prompt"].lower()) if r.get("prompt") else None
        triplets.append(
            Triplet(str(r.get("id") or i), r["ref_path"], pos, neg, prompt, {"closer": "left" if left else "right"})
        )
    triplets.sort(key=lambda t: (t.anchor, t.id))
    return TripletSet(
        "nights",
        protocol,
        str(root),
        seed,
        {"split": split, "min_votes": min_votes},
        triplets,
        [f"rows per split: {dict(sorted(splits.items()))}"],
    )


SPEC = DatasetSpec(
    "nights",
    "NIGHTS 2AFC, human votes (DreamSim)",
    LAYOUT,
    "2afc",
    build,
    ("paper", "script"),
    OPTIONS,
    "diffsim-s-nights",
    2120,
)
