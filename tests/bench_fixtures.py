"""Tiny benchmark folders in the real on-disk layouts, with the ground truth visible in the pixels.

Positives are the anchor's colour (plus a little noise or a small blend toward the inverse colour);
negatives are another colour or a larger blend, so a plain pixel distance scores 100% and a loader
that swaps the labels scores 0%.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = [
    (220, 30, 30),
    (30, 220, 30),
    (30, 30, 220),
    (220, 220, 30),
    (30, 220, 220),
    (220, 30, 220),
    (120, 60, 10),
    (10, 120, 60),
]


def write_image(path: Path, colour, noise: float = 2.0, blend: float = 0.0, seed: int = 0, size: int = 16) -> Path:
    """A flat ``colour`` blended by ``blend`` toward its inverse, plus Gaussian noise; format from the suffix."""
    g = np.random.default_rng(seed)
    c = np.asarray(colour, float)
    c = (1 - blend) * c + blend * (255 - c)
    arr = np.clip(c + g.normal(0, noise, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".bmp": "BMP", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    Image.fromarray(arr).save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return path


def nights(tmp: Path, n: int = 12) -> Path:
    """nights/{ref,distort}/... + data.csv with columns in a shuffled order (read by name)."""
    root = tmp / "nights"
    rows = []
    for i in range(n):
        d = f"{i // 10:03d}"
        ref, left, right = f"ref/{d}/{i:03d}.png", f"distort/{d}/{i:03d}_0.png", f"distort/{d}/{i:03d}_1.png"
        left_closer = i % 2 == 0
        near, far = PALETTE[i % 4], PALETTE[4 + i % 4]
        write_image(root / ref, near, seed=i)
        write_image(root / left, near if left_closer else far, seed=100 + i)
        write_image(root / right, far if left_closer else near, seed=200 + i)
        rows.append(
            {
                "prompt": ["Fish", "Golden Retriever", "abbey"][i % 3],
                "split": ["train", "val", "test"][i % 3],
                "right_vote": int(not left_closer),
                "left_path": left,
                "id": i,
                "ref_path": ref,
                "votes": 5 if i == n - 1 else 6 + i % 3,
                "right_path": right,
                "left_vote": int(left_closer),
                "is_imagenet": str(bool(i % 2)),
            }
        )
    with open(root / "data.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def tid2013(tmp: Path, refs=(1, 2, 25), types=(1, 11, 13, 15), flat: bool = False) -> Path:
    """Real case quirks: I01.BMP, i25.bmp, I01_01_1.bmp, I01_11_1.BMP ...; lower-case mos_with_names.txt."""
    root = tmp / "tid2013"
    rdir, ddir = (root, root) if flat else (root / "reference_images", root / "distorted_images")
    lines = []
    for r in refs:
        col = PALETTE[r % 8]
        write_image(rdir / ("i25.bmp" if r == 25 else f"I{r:02d}.BMP"), col, noise=0, seed=r)
        for t in types:
            for lvl in range(1, 6):
                if lvl == 1 and t in (1, 11, 13):
                    name = f"I{r:02d}_{t:02d}_1" + (".BMP" if t in (11, 13) else ".bmp")
                else:
                    name = f"i{r:02d}_{t:02d}_{lvl}.bmp"
                write_image(ddir / name, col, blend=0.08 * lvl, noise=1, seed=r * 100 + t * 10 + lvl)
                lines.append(f"{7 - lvl:.5f} {name.lower()}\n")
    (root / "mos_with_names.txt").write_text("".join(lines))
    (root / "mos.txt").write_text("".join(ln.split()[0] + "\n" for ln in lines))
    (root / "readme").write_text("TID2013 fixture\n")
    return root


def cute(tmp: Path, cats=("apple", "mug"), n_inst: int = 3, conds=("lighting_1", "lighting_2"), per: int = 3) -> Path:
    root = tmp / "CUTE"
    root.mkdir(parents=True)
    (root / ".DS_Store").write_bytes(b"\0\1")
    (root / "main.py").write_text("print('not a category')\n")
    k = 0
    for c in cats:
        for j in range(n_inst):
            for cond in conds:
                for m in range(per):
                    ext = ".JPG" if (m == 2 and j == 0) else ".jpg"  # upper-case extension must be read too
                    write_image(
                        root / c / f"{c}_{j + 1}" / cond / f"{m:02d}{ext}", PALETTE[k], noise=3, seed=k * 50 + m
                    )
                (root / c / f"{c}_{j + 1}" / cond / ".DS_Store").write_bytes(b"\0")
            k += 1
    return root


DB_METHODS = {
    "blip_diffusion": "blip_diffusion_gs7_5_step100_seed42_torch_float16",
    "dreambooth_sd": "dreambooth_sd_gs7_5_step100_seed42_torch_float16",
    "dreambooth_lora_sdxl": "dreambooth_lora_sdxl_gs7_5_step100_seed42_torch_float16",
}
DB_COLLECTIONS = ["live_subject_animal_00_kitten", "object_00_red_mug"]


def dreambench(tmp: Path, raw_only_method: str | None = None) -> Path:
    """samples/<method>/{src,tgt}_image/... + data_human_rating/{merged,raw}_data/group{1,2}.

    dreambooth_lora_sdxl has ratings *opposite* to its pixels: a loader that reads it against the
    DreamBooth-SD ratings (substring matching) or swaps labels loses accuracy.
    """
    root = tmp / "dreambench_plus"
    for mi, (method, folder) in enumerate(DB_METHODS.items()):
        g1, g2 = {}, {}
        for ci, cid in enumerate(DB_COLLECTIONS):
            col = PALETTE[ci]
            base = root / "samples" / folder
            for p in range(9):
                score = 4 - p % 5 if method == "dreambooth_lora_sdxl" else p % 5
                write_image(base / "src_image" / cid / f"{p}_0.jpg", col, noise=0, seed=ci)
                write_image(
                    base / "tgt_image" / cid / f"{p}_0.jpg",
                    col,
                    noise=1,
                    blend=(4 - score) / 9,
                    seed=mi * 1000 + ci * 20 + p,
                )
                (base / "text" / cid).mkdir(parents=True, exist_ok=True)
                (base / "text" / cid / f"{p}_0.txt").write_text(f"prompt {p}")
                g1[f"{cid}-{p}"] = score
                g2[f"{cid}-{p}"] = (
                    (score + 3 if score < 2 else score - 3) if p == 8 else score
                )  # disagreement 3 -> dropped
            (base / "negative_prompt.txt").write_text("")
        for grp, data in (("group1", g1), ("group2", g2)):
            if method != raw_only_method:
                d = root / "data_human_rating" / "merged_data" / grp
                d.mkdir(parents=True, exist_ok=True)
                (d / f"{method}-cp.json").write_text(json.dumps(dict(sorted(data.items()))))
                (d / f"{method}-pf.json").write_text(json.dumps({k: 2 for k in data}))
            d = root / "data_human_rating" / "raw_data" / grp
            d.mkdir(parents=True, exist_ok=True)
            (d / f"batch0-{method}.json").write_text(json.dumps({k: [v, 2] for k, v in data.items()}))
    # a method folder with no ratings at all: must be skipped, not matched by substring
    write_image(
        root / "samples" / "emu2_gs3_step50_seed42_torch_bfloat16" / "src_image" / DB_COLLECTIONS[0] / "0_0.jpg",
        PALETTE[0],
    )
    return root


IP_WEIGHTS = ["1.0", "0.8", "0.6", "0.4", "0.35", "0.3", "0.2"]


def ipbench(tmp: Path, classes=("doraemon", "hello_kitty", "pikachu")) -> Path:
    """IPref/<cls>/<w>.png and IPA-bench/<cls>.JPG; returns the IPref root."""
    for i, cls in enumerate(classes):
        write_image(tmp / "IPA-bench" / f"{cls}.JPG", PALETTE[i], noise=0, seed=i)
        for j, w in enumerate(IP_WEIGHTS):
            write_image(
                tmp / "IPref" / cls / f"{w}.png", PALETTE[i], noise=1, blend=(1 - float(w)) * 0.9, seed=i * 10 + j
            )
    (tmp / "IPref" / ".DS_Store").write_bytes(b"\0")
    return tmp / "IPref"


def style_bench(tmp: Path, name: str = "Sref", n_styles: int = 5, per: int = 4, ext: str = ".png") -> Path:
    root = tmp / name
    for s in range(n_styles):
        for k in range(per):
            write_image(root / f"{s:03d}" / f"{k + 1:02d}{ext}", PALETTE[s], noise=4, seed=s * 10 + k)
    (root / "000" / "notes.txt").write_text("not an image")
    return root


def tiktok(tmp: Path, videos: int = 2, frames: int = 12, nested: bool = True) -> Path:
    """TikTok_dataset/TikTok_dataset/<00001>/{images,masks}/0001.png ... (frame k drifts by k)."""
    root = tmp / "TikTok_dataset"
    base = root / "TikTok_dataset" if nested else root
    for v in range(1, videos + 1):
        for f in range(1, frames + 1):
            write_image(
                base / f"{v:05d}" / "images" / f"{f:04d}.png", PALETTE[v], noise=1, blend=0.02 * f * v, seed=v * 100 + f
            )
            write_image(base / f"{v:05d}" / "masks" / f"{f:04d}.png", (255, 255, 255), noise=0)
    return root
