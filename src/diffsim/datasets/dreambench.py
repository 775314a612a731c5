"""DreamBench++: reference vs two generated images of it; the higher human rating is closer.

The paper's 937 triplets come from the rule of ``dreambench_main.py``, kept here with its parameters:
average the two rater groups, drop keys where they differ by more than ``max_disagreement`` (2), keep
unordered pairs whose ratings differ by at least ``min_gap`` (2), and at most ``max_pairs`` (5) random
pairs per (method, reference). Unlike the script, method folders map to rating files by exact name
(no substring matching, so DreamBooth-LoRA is never scored against DreamBooth-SD ratings).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .base import (
    DatasetSpec,
    Triplet,
    TripletSet,
    check_options,
    layout_error,
    list_dirs,
    opt_int,
    rel,
    require_dir,
    rng,
)

logger = logging.getLogger(__name__)

LAYOUT = """\
samples/<method_dir>/src_image/<collection_id>/0_0.jpg      (reference)
samples/<method_dir>/tgt_image/<collection_id>/<p>_0.jpg    (generated image for prompt p)
data_human_rating/merged_data/group1/<method>-cp.json       {"<collection_id>-<p>": 0..4}
data_human_rating/merged_data/group2/<method>-cp.json       (or raw_data/group*/*-<method>.json)
   --root is samples/ or its parent; option ratings=DIR for data_human_rating elsewhere
"""
OPTIONS = {
    "ratings": "data_human_rating folder (default: inside or beside the samples folder)",
    "max_pairs": "pairs kept per (method, reference) (default 5)",
    "min_gap": "minimum rating gap of a pair (default 2)",
    "max_disagreement": "drop keys where the two groups differ by more (default 2)",
}
GROUPS = ("group1", "group2")

#: rating-file method name -> the sample folder names it is known under (constants.py and generate_images.py)
METHOD_DIRS: dict[str, tuple[str, ...]] = {
    "blip_diffusion": ("blip_diffusion_gs7_5_step100_seed42_torch_float16",),
    "dreambooth_sd": ("dreambooth_sd_gs7_5_step100_seed42_torch_float16",),
    "dreambooth_lora_sdxl": ("dreambooth_lora_sdxl_gs7_5_step100_seed42_torch_float16",),
    "emu2": ("emu2_gs3_step50_seed42_torch_bfloat16",),
    "ip_adapter_plus_vit_h_sdxl": (
        "ip_adapter_plus_vit_h_sdxl_scale0_6_gs7_5_step100_seed42_torch_float16",
        "ip_adapter_plus_sdxl_vit_h_scale0_6_gs7_5_step100_seed42_torch_float16",
    ),
    "ip_adapter_vit_g_sdxl": (
        "ip_adapter_vit_g_sdxl_scale0_6_gs7_5_step100_seed42_torch_float16",
        "ip_adapter_sdxl_vit_g_scale0_6_gs7_5_step100_seed42_torch_float16",
    ),
    "textual_inversion_sd": ("textual_inversion_sd_gs7_5_step100_seed42_torch_float16",),
}
_DIR_TO_METHOD = {d: m for m, dirs in METHOD_DIRS.items() for d in dirs}


def _method_of(folder: str) -> str | None:
    return _DIR_TO_METHOD.get(folder) or (folder if folder in METHOD_DIRS else None)


def _ratings(ratings: Path, method: str) -> list[dict[str, float]] | None:
    """The concept-preservation scores of both groups (merged_data, else built from raw_data)."""
    out = []
    for g in GROUPS:
        merged = ratings / "merged_data" / g / f"{method}-cp.json"
        if merged.is_file():
            out.append({k: float(v) for k, v in json.loads(merged.read_text()).items()})
            continue
        raw = sorted((ratings / "raw_data" / g).glob(f"*-{method}.json"))
        if not raw:
            return None
        d: dict[str, float] = {}
        for f in raw:
            d.update({k: float(v[0]) for k, v in json.loads(f.read_text()).items()})
        out.append(d)
    return out


def build(root: Path, protocol: str = "paper", seed: int = 0, options: dict[str, Any] | None = None) -> TripletSet:
    options = dict(options or {})
    check_options("dreambench", options, OPTIONS)
    require_dir("dreambench", root, LAYOUT)
    samples = root / "samples" if (root / "samples").is_dir() else root
    if options.get("ratings"):
        ratings = Path(options["ratings"])
    else:
        cands = [samples / "data_human_rating", samples.parent / "data_human_rating"]
        ratings = next((c for c in cands if c.is_dir()), cands[-1])
    require_dir("dreambench", ratings, LAYOUT, "human rating folder not found (option ratings)")
    max_pairs, min_gap = opt_int(options, "max_pairs", 5), opt_int(options, "min_gap", 2)
    max_dis = opt_int(options, "max_disagreement", 2)
    r = rng(seed)
    triplets: list[Triplet] = []
    notes: list[str] = []
    methods = 0
    for mdir in list_dirs(samples):
        if mdir.name == "data_human_rating":
            continue
        method = _method_of(mdir.name)
        groups = _ratings(ratings, method) if method else None
        if method is None or groups is None:
            notes.append(f"{mdir.name}: no rating file for this method folder; skipped")
            continue
        methods += 1
        g1, g2 = groups
        for cdir in list_dirs(mdir / "src_image"):
            cid = cdir.name
            scores: dict[int, float] = {}
            for key in sorted(g1):
                head, _, p = key.rpartition("-")
                if head != cid or key not in g2 or abs(g1[key] - g2[key]) > max_dis:
                    continue
                scores[int(p)] = (g1[key] + g2[key]) / 2
            ps = sorted(scores)
            pairs = [(a, b) for i, a in enumerate(ps) for b in ps[i + 1 :] if abs(scores[a] - scores[b]) >= min_gap]
            if len(pairs) > max_pairs:
                pairs = r.sample(pairs, max_pairs)
            ref = cdir / "0_0.jpg"
            for a, b in pairs:
                hi, lo = (a, b) if scores[a] > scores[b] else (b, a)
                tgt = mdir / "tgt_image" / cid
                triplets.append(
                    Triplet(
                        f"{method}/{cid}/{hi}-{lo}",
                        rel(ref, root),
                        rel(tgt / f"{hi}_0.jpg", root),
                        rel(tgt / f"{lo}_0.jpg", root),
                        None,
                        {"ratings": [scores[hi], scores[lo]], "method": method},
                    )
                )
    if methods == 0:
        raise layout_error("dreambench", samples, "no method folder with matching rating files", LAYOUT)
    opts = {"max_pairs": max_pairs, "min_gap": min_gap, "max_disagreement": max_dis}
    return TripletSet("dreambench", protocol, str(root), seed, opts, triplets, notes)


SPEC = DatasetSpec(
    "dreambench",
    "DreamBench++ concept preservation, human ratings",
    LAYOUT,
    "2afc",
    build,
    ("paper",),
    OPTIONS,
    "diffsim-s-instance",
    937,
)
