"""diffsim versus a naive per-pair DiffSim-S, side by side in one run, same scores.

Real SD 1.5 U-Net / VAE / text-encoder architectures with random weights (no download needed).
Naive = for every pair: VAE-encode both images, encode the text, run the full U-Net on each
(tests/reference_impl.py). diffsim = embed every distinct image once (truncated U-Net pass), then
compare features. Rows: a 2AFC triplet, one reference against 4 candidates, an 8 x 8 matrix.

    python benchmarks/bench_core.py            # 512 px, the README table (about 75 min on 2 CPU cores)
    python benchmarks/bench_core.py --size 128 # a quick look
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from common import machine, make_images, peak_rss_gib, sd15_random
from tests.reference_impl import reference_score

from diffsim import DiffSim, StableDiffusionBackbone
from diffsim.metrics import DiffSimSettings

TARGETS = {"triplet": 1.6, "ref-vs-4": 2.0, "matrix-8x8": 6.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--layer", default="up0")
    ap.add_argument("--step", type=int, default=500)
    ap.add_argument("--rows", default="triplet,ref-vs-4,matrix-8x8")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    rows = args.rows.split(",")

    t0 = time.perf_counter()
    parts = sd15_random()
    backbone = StableDiffusionBackbone(parts, torch.device("cpu"), torch.float32)
    print(f"built random SD 1.5 in {time.perf_counter() - t0:.1f}s on {machine()}", flush=True)
    imgs = make_images(Path(tempfile.mkdtemp()), 16, args.size)
    prompt = "High quality image"

    def fresh() -> DiffSim:
        backbone.clear_caches()  # no text embedding or latent carried over between rows
        return DiffSim(DiffSimSettings(layer=args.layer, step=args.step, prompt=prompt, size=args.size,
                                       batch_size=args.batch_size), backbone=backbone)

    metric = fresh()
    layer, t = metric.layers[0], metric.timestep
    pairs = {
        "triplet": [(imgs[0], imgs[1]), (imgs[0], imgs[2])],
        "ref-vs-4": [(imgs[0], c) for c in imgs[1:5]],
        "matrix-8x8": [(a, b) for a in imgs[:8] for b in imgs[8:16]],
    }

    ours: dict[str, tuple[float, list[float], int]] = {}
    for row in rows:
        m = fresh()
        calls = backbone.passes
        start = time.perf_counter()
        if row == "triplet":
            s = [m.score(imgs[0], imgs[1]), m.score(imgs[0], imgs[2])]
        elif row == "ref-vs-4":
            s = m.score(imgs[0], imgs[1:5]).tolist()
        else:
            s = m.matrix(imgs[:8], imgs[8:16]).flatten().tolist()
        ours[row] = (time.perf_counter() - start, s, backbone.passes - calls)
        print(f"diffsim {row}: {ours[row][0]:.1f}s, {ours[row][2]} U-Net calls", flush=True)
    peak = peak_rss_gib()

    naive: dict[str, tuple[float, list[float]]] = {}
    for row in rows:
        start = time.perf_counter()
        s = [reference_score(parts, a, b, layer, t, prompt, 2334, args.size) for a, b in pairs[row]]
        naive[row] = (time.perf_counter() - start, s)
        print(f"naive {row}: {naive[row][0]:.1f}s", flush=True)

    print(f"\nDiffSim-S, random-weight SD 1.5 architecture, {args.size} px, layer {args.layer} "
          f"({layer}), step {args.step} (T={t}), float32, batch {args.batch_size}")
    print(f"machine: {machine()}\n")
    print("| case | pairs | naive (s) | diffsim (s) | speed-up | target | max abs score diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    result = {"size": args.size, "layer": layer, "timestep": t, "machine": machine(), "rows": {}}
    for row in rows:
        n_t, n_s = naive[row]
        o_t, o_s, _ = ours[row]
        diff = max(abs(x - y) for x, y in zip(n_s, o_s))
        print(f"| {row} | {len(n_s)} | {n_t:.1f} | {o_t:.1f} | {n_t / o_t:.2f}x | >= {TARGETS[row]}x | {diff:.1e} |")
        result["rows"][row] = {"naive_s": n_t, "diffsim_s": o_t, "speedup": n_t / o_t, "max_abs_diff": diff}
    print(f"\npeak memory of diffsim (process RSS, before the naive runs): {peak:.2f} GiB (target < 6 GiB)")
    result["peak_rss_gib"] = peak
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
