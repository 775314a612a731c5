"""How far the functional path's on-device resize is from the cached path's Pillow Lanczos resize.

Pixels: every image in examples/ (and its 2x upscale) resized to 64, 224 and 512 px both ways
(``diffsim.functional.resize_square`` with method "lanczos", Pillow's filter as matrices, and "bicubic",
antialiased ``F.interpolate``; against ``diffsim.images.to_unit_tensor``, Pillow Lanczos on the float
tensor), mean and max absolute difference in [0, 1] units.
Scores: DiffSim-S on the tests' sharpened tiny model (random weights; real scores need a real model) for
pairs of 96 x 80 images, functional on the raw tensors vs cached ``metric.score`` on the same tensors.

    python benchmarks/resize_diff.py [--out resize_diff.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from common import ROOT

from diffsim import functional as DF
from diffsim.images import to_unit_tensor


def pixel_rows() -> list[dict]:
    rows = []
    for path in sorted((ROOT / "examples").glob("*.png")):
        base = to_unit_tensor(path, 256)  # the examples are 256 x 256
        for name, src in (("256", base), ("512 (2x Lanczos)", DF.resize_square(base[None], 512)[0])):
            for size in (64, 224, 512):
                if size == src.shape[-1]:
                    continue
                pil = to_unit_tensor(src, size)
                for method in ("lanczos", "bicubic"):
                    d = (DF.resize_square(src[None], size, method=method)[0] - pil).abs()
                    rows.append({"image": path.name, "source": name, "size": size, "method": method,
                                 "mean_abs": float(d.mean()), "max_abs": float(d.max())})
    return rows


def score_rows() -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.tiny_sd import build_tiny_pipeline
    from tests.tiny_sharp import sharpen_pipeline

    from diffsim import DiffSim

    tmp = Path(tempfile.mkdtemp())
    g = torch.Generator().manual_seed(0)
    low = torch.rand(8, 3, 6, 6, generator=g)
    imgs = torch.nn.functional.interpolate(low, size=(96, 80), mode="bicubic", align_corners=False).clamp(0, 1)
    model = sharpen_pipeline(build_tiny_pipeline(tmp / "tiny"), tmp / "sharp", list(imgs), size=64)
    m = DiffSim.from_pretrained(model, layer="up1", size=64, device="cpu", dtype="float32")
    x, y = imgs[:4], imgs[4:]
    cached = m.score(x, y)
    out = {"pairs": 4, "from": "96x80", "size": 64, "cached": cached.tolist()}
    for method in ("lanczos", "bicubic"):
        with torch.no_grad():
            px, py = DF.resize_square(x, 64, method=method), DF.resize_square(y, 64, method=method)
            func = m.differentiable_scores(px, py)
        d = (func - cached).abs()
        out[method] = {"functional": func.tolist(), "mean_abs": float(d.mean()), "max_abs": float(d.max())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = pixel_rows()
    print(f"{'image':16s} {'source':18s} {'size':>5s} {'method':8s} {'mean |d|':>9s} {'max |d|':>8s}")
    for r in rows:
        print(f"{r['image']:16s} {r['source']:18s} {r['size']:5d} {r['method']:8s} {r['mean_abs']:9.2e} "
              f"{r['max_abs']:8.2e}")
    scores = score_rows()
    for method in ("lanczos", "bicubic"):
        d = scores[method]
        print(f"tiny-model DiffSim-S, {scores['pairs']} pairs {scores['from']} -> {scores['size']}, {method}: "
              f"mean |d| {d['mean_abs']:.2e}, max |d| {d['max_abs']:.2e}")
    if args.out:
        Path(args.out).write_text(json.dumps({"pixels": rows, "scores": scores}, indent=2))


if __name__ == "__main__":
    main()
