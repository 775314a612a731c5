"""A layer x timestep sweep: diffsim's one-pass-per-timestep sweep versus a naive per-setting loop.

Real SD 1.5 architectures with random weights (no download). Naive = for each of the L x S settings,
a fresh DiffSim-S with that one layer and step embeds every image (VAE + U-Net each time).
diffsim = `diffsim.bench.sweep`: VAE-encode each image once, one truncated U-Net pass per
(image, timestep) captures all L layers.

    nice -n 10 python benchmarks/bench_sweep.py --size 64 --images 6
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import machine, sd15_random

from diffsim import DiffSim, StableDiffusionBackbone
from diffsim.metrics import DiffSimSettings
from diffsim.bench import EvalOptions, evaluate_2afc
from diffsim.bench.sweep import sweep
from diffsim.datasets import load_dataset
from tests import bench_fixtures as fx

LAYERS = ["down1", "down2", "mid", "up0", "up1", "up2", "down0"]
STEPS = [100, 300, 500, 700, 900]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--images", type=int, default=6, help="distinct images (styles x 2)")
    ap.add_argument("--triplets", type=int, default=12)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    root = fx.style_bench(tmp, "Sref", n_styles=args.images // 2, per=2)
    ts = load_dataset("sref", root, seed=0, options={"n": args.triplets})
    n_img = len({p for t in ts.triplets for p in (t.anchor, t.positive, t.negative)})
    backbone = StableDiffusionBackbone(sd15_random(), torch.device("cpu"), torch.float32)
    print(f"{machine()}; {n_img} images, {len(ts.triplets)} triplets, {len(LAYERS)} layers x {len(STEPS)} steps, "
          f"{args.size} px", flush=True)
    opts = EvalOptions(batch_size=8, n_boot=100)

    def metric(**kw) -> DiffSim:
        backbone.clear_caches()  # each run starts cold: no latents carried over
        backbone.prompt_embedding("High quality image"), backbone.prompt_embedding("")  # text cache warm
        return DiffSim(DiffSimSettings(size=args.size, batch_size=8, **kw), backbone=backbone)

    backbone.prompt_embedding("High quality image"), backbone.prompt_embedding("")  # warm the text cache
    c0, t0 = backbone.passes, time.perf_counter()
    fast = sweep(metric(layer=LAYERS), ts, LAYERS, STEPS, tmp / "fast", opts)
    t_fast, c_fast = time.perf_counter() - t0, backbone.passes - c0
    c0, t0 = backbone.passes, time.perf_counter()
    naive = {}
    for step in STEPS:
        for layer in LAYERS:
            r = evaluate_2afc(metric(layer=layer, step=step), ts, tmp / f"naive-{layer}-{step}", opts)
            naive[(layer, step)] = r["accuracy"]
    t_naive, c_naive = time.perf_counter() - t0, backbone.passes - c0
    per_call = -(-n_img // 8)  # U-Net calls per full pass over the images (batch size 8)
    same = all(naive[(g["layer"], g["step"])] == g["accuracy"] for g in fast["grid"])
    print()
    print("| method | U-Net calls | U-Net passes / image | wall time (s) |")
    print("|---|---:|---:|---:|")
    print(f"| naive loop (1 setting per run) | {c_naive} | {c_naive / per_call:.0f} | {t_naive:.1f} |")
    print(f"| diffsim sweep | {c_fast} | {c_fast / per_call:.0f} | {t_fast:.1f} |")
    print(f"| ratio naive / sweep | {c_naive / c_fast:.1f}x | | {t_naive / t_fast:.1f}x |")
    print(f"\nbatch size 8 (U-Net calls count batches); same accuracies in every cell: {same}")


if __name__ == "__main__":
    main()
