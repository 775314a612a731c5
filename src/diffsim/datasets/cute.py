"""CUTE ("Are these the same apple?"): two images of one instance vs one of another, same condition.

Paper and script agree: ``rounds`` (10) rounds, every instance of every category is an anchor once
per round; A and B share the instance and a random condition folder, C is another instance under the
same-named condition. Prompt ``"The photo of a {category}"``. Stray files (``.DS_Store``, ``main.py``)
are ignored; image extensions match case-insensitively.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import (
    DatasetSpec,
    Triplet,
    TripletSet,
    check_options,
    layout_error,
    list_dirs,
    list_images,
    opt_int,
    rel,
    require_dir,
    rng,
)

LAYOUT = """\
CUTE/
└── <category>/                 e.g. apple
    └── <instance>/             >= 2 instances per category
        └── <condition>/        e.g. lighting_1; names shared across the category's instances
            └── *.jpg | *.png
"""
OPTIONS = {"rounds": "anchor rounds per instance (paper: 10)"}
PROMPT = "The photo of a {}"


def build(root: Path, protocol: str = "paper", seed: int = 0, options: dict[str, Any] | None = None) -> TripletSet:
    options = dict(options or {})
    check_options("cute", options, OPTIONS)
    require_dir("cute", root, LAYOUT)
    rounds = opt_int(options, "rounds", 10)
    tree: dict[str, dict[str, dict[str, list[Path]]]] = {}
    for cat_dir in list_dirs(root):
        insts = {i.name: {c.name: list_images(c) for c in list_dirs(i)} for i in list_dirs(cat_dir)}
        insts = {k: v for k, v in insts.items() if any(v.values())}
        if insts:
            tree[cat_dir.name] = insts
    if not tree:
        raise layout_error("cute", root, "no <category>/<instance>/<condition>/ images found", LAYOUT)
    r = rng(seed)
    triplets: list[Triplet] = []
    notes: set[str] = set()
    for rnd in range(rounds):
        for cat, insts in tree.items():
            for inst, conds in insts.items():
                usable = [c for c, ims in conds.items() if len(ims) >= 2]
                if not usable:
                    notes.add(f"{cat}/{inst}: no condition with 2 images; skipped")
                    continue
                cond = r.choice(usable)
                a, b = r.sample(conds[cond], 2)
                others = [o for o in insts if o != inst and insts[o].get(cond)]
                if not others:
                    notes.add(f"{cat}/{inst}/{cond}: no other instance has this condition; skipped")
                    continue
                c = r.choice(insts[r.choice(others)][cond])
                triplets.append(
                    Triplet(
                        f"{rnd}/{cat}/{inst}",
                        rel(a, root),
                        rel(b, root),
                        rel(c, root),
                        PROMPT.format(cat),
                        {"condition": cond},
                    )
                )
    return TripletSet("cute", protocol, str(root), seed, {"rounds": rounds}, triplets, sorted(notes))


SPEC = DatasetSpec(
    "cute",
    "CUTE instance similarity (same instance, same condition)",
    LAYOUT,
    "2afc",
    build,
    ("paper",),
    OPTIONS,
    "diffsim-s-cute",
    1800,
)
