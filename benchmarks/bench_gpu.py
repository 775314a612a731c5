"""DiffSim-S embedding throughput, one process: naive pipeline vs eager vs compiled (vs CUDA graphs).

Real SD 1.5 U-Net / VAE / text-encoder architectures with random weights (no download needed), layer
up0, paper step 500, the guidance pair. Rows, all in the same run:

* naive: per image, VAE encode + text encoding + the *full* U-Net on the pair with a hook
  (``tests/reference_impl.py``), images decoded in the main process;
* hooks: the library's default path (truncated by a pre-hook raising StopForward), eager;
* eager / compiled / cudagraphs: the explicit runner (explicit truncated U-Net, ``torch.inference_mode``,
  channels_last on CUDA), images decoded in DataLoader workers (:mod:`diffsim.loader`), batch sizes
  1, 8, 32; ``compiled`` = ``torch.compile`` (inductor), ``cudagraphs`` = mode ``reduce-overhead``;
* compare: pairs/s of an N x M score matrix at up0 from embedded features, float32 and with
  ``compare_dtype=float16``, its max score difference and 2AFC decision flips on fixture triplets.

Each row also gives the peak memory and the max score difference to the float32 eager path. The
backbone's latent cache is off in every row, so each image runs the VAE encoder (as new images do).

    python benchmarks/bench_gpu.py                       # CUDA, 512 px, fp16, every row (benchmarks/gpu_check.sh)
    python benchmarks/bench_gpu.py --device cpu --size 128 --images 8 --naive-images 2 \\
        --batch-sizes 1,4 --compare 8x8              # CPU smoke test (float32)
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import ROOT, machine, make_images, peak_rss_gib, sd15_random
from tests.bench_fixtures import nights
from tests.reference_impl import image_qkv, load_pixels

from diffsim import DiffSim, StableDiffusionBackbone
from diffsim.aas import QKV, score_matrix
from diffsim.backbones.loading import prepare_components
from diffsim.backbones.unet_forward import ExplicitRunner
from diffsim.devices import resolve_device, resolve_dtype
from diffsim.loader import ImageLoader
from diffsim.preprocess import Resize

PROMPT, SEED = "High quality image", 2334
MODES = {"hooks": False, "eager": False, "compiled": True, "cudagraphs": "reduce-overhead"}


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_gib(dev: torch.device) -> float:
    """Peak GPU memory allocated since the last reset, or the process' peak RSS on a CPU."""
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else peak_rss_gib()


def features(backbone: StableDiffusionBackbone, paths: list[str], layer: str, t: int, size: int,
             batch: int) -> QKV:
    """Q/K/V of ``paths`` at ``layer`` (N, 2, H, T, D), through the loader, in ``batch``-sized passes."""
    loader = ImageLoader(paths, Resize(size, signed=True), batch, device=backbone.device)
    parts = [backbone.extract(px, [layer], t, PROMPT, SEED)[layer] for _, px in loader]
    return QKV(*(torch.cat([getattr(p, n) for p in parts]) for n in "qkv"))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cuda (default where available) or cpu")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--dtype", default=None, help="model dtype; default float16 on CUDA, float32 on CPU")
    ap.add_argument("--layer", default="up0")
    ap.add_argument("--step", type=int, default=500)
    ap.add_argument("--rows", default="naive,hooks,eager,compiled,cudagraphs,compare")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--images", type=int, default=128, help="images per throughput row (at least 2 batches)")
    ap.add_argument("--naive-images", type=int, default=16)
    ap.add_argument("--check-images", type=int, default=8, help="images for the score-difference checks")
    ap.add_argument("--compare", default="128x128", help="N x M of the compare-rate matrix")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: diffsim.loader's)")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("diffsim.loader").setLevel(logging.WARNING)

    dev = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, dev)
    rows = args.rows.split(",")
    if dev.type != "cuda" and "cudagraphs" in rows:
        rows.remove("cudagraphs")
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    n_cmp, m_cmp = (int(x) for x in args.compare.lower().split("x"))
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "none (CPU)"
    head = (f"device: {dev} ({gpu}); {machine()}; torch {torch.__version__}; dtype {str(dtype)[6:]}; "
            f"{args.size} px; layer {args.layer}; step {args.step}")
    print(head, flush=True)

    start = time.perf_counter()
    parts32 = sd15_random()
    if dtype != torch.float32 or dev.type != "cpu":
        parts = prepare_components(copy.deepcopy(parts32), dtype, dev)
        parts32 = prepare_components(parts32, torch.float32, dev) if dtype != torch.float32 else parts
    else:
        parts = parts32
    print(f"built random SD 1.5 on {dev} in {time.perf_counter() - start:.0f}s", flush=True)
    ref_bb = StableDiffusionBackbone(parts32, dev, torch.float32, inference_mode=True)
    ref_bb.cache_latents = False
    layer = ref_bb.resolve([args.layer])[0]
    t = ref_bb.timestep(step=args.step)
    folder = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    n_img = max(args.images, 2 * max(sizes), args.check_images, args.naive_images)
    paths = make_images(folder / "img", n_img, args.size)
    check = paths[: args.check_images]
    ref_scores = score_matrix(*[features(ref_bb, check, layer, t, args.size, args.check_images)] * 2)
    results: dict[str, Any] = {"header": head, "layer": layer, "timestep": t, "rows": [], "compare": {}}
    if dtype != torch.float32 or dev.type != "cpu":
        del ref_bb
        if dtype != torch.float32:
            del parts32
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    print(f"float32 reference scores of {len(check)} images ready", flush=True)
    table: list[tuple] = []

    if "naive" in rows:
        px = [load_pixels(p, args.size) for p in paths[:1]]
        image_qkv(parts, px[0], layer, t, PROMPT, SEED)  # warm-up
        sync(dev)
        reset_peak(dev)
        n = args.naive_images
        t0 = time.perf_counter()
        for p in paths[:n]:
            with torch.inference_mode():
                image_qkv(parts, load_pixels(p, args.size), layer, t, PROMPT, SEED)
        sync(dev)
        rate = n / (time.perf_counter() - t0)
        table.append(("naive (full U-Net, per image)", 1, n, rate, None, peak_gib(dev), None))
        print(f"naive: {rate:.2f} images/s", flush=True)

    channels_last = dev.type == "cuda"
    for mode in [r for r in rows if r in MODES]:
        bb = StableDiffusionBackbone(parts, dev, dtype, compile=MODES[mode], channels_last=channels_last,
                                     inference_mode=True)
        if mode == "eager":  # the explicit runner uncompiled (compile= selects it compiled; hooks: no runner)
            bb.runner = ExplicitRunner(parts.unet, parts.vae, dev)
        bb.cache_latents = False  # every row sees its images as new: no VAE pass saved by the latent cache
        diff = None
        for bs in sizes:
            n = max(args.images // bs, 2) * bs
            reset_peak(dev)
            warm = paths[:bs]
            t0 = time.perf_counter()
            features(bb, warm, layer, t, args.size, bs)  # first call of this shape: compiles
            sync(dev)
            first = time.perf_counter() - t0
            loader = ImageLoader(paths[:n], Resize(args.size, signed=True), bs, device=dev,
                                 num_workers=args.workers)
            t0 = time.perf_counter()
            for _, px in loader:
                bb.extract(px, [layer], t, PROMPT, SEED)
            sync(dev)
            rate = n / (time.perf_counter() - t0)
            peak = peak_gib(dev)
            if diff is None:
                got = features(bb, check, layer, t, args.size, min(bs, len(check)))
                diff = max_diff(score_matrix(got, got), ref_scores)
            compile_s = first if MODES[mode] else None
            table.append((f"{mode} {str(dtype)[6:]}", bs, n, rate, compile_s, peak, diff))
            print(f"{mode} batch {bs}: {rate:.2f} images/s (first batch {first:.1f}s)", flush=True)

    cmp_lines: list[str] = []
    if "compare" in rows:
        bb = StableDiffusionBackbone(parts, dev, dtype, channels_last=channels_last, inference_mode=True)
        bb.cache_latents = False
        got = features(bb, check, layer, t, args.size, len(check))

        def tiled(n: int) -> QKV:
            reps = -(-n // len(check))
            return QKV(*(torch.cat([getattr(got, k)] * reps)[:n] for k in "qkv"))

        a, b = tiled(n_cmp), tiled(m_cmp)
        for cdt in (None, torch.float16 if dev.type == "cuda" else torch.bfloat16):
            score_matrix(QKV(a.q[:2], a.k[:2], a.v[:2]), b, dtype=cdt)  # warm-up
            sync(dev)
            reset_peak(dev)
            t0 = time.perf_counter()
            score_matrix(a, b, dtype=cdt)
            sync(dev)
            rate = n_cmp * m_cmp / (time.perf_counter() - t0)
            name = "float32" if cdt is None else str(cdt)[6:]
            results["compare"][name] = {"pairs_per_s": rate, "peak_gib": peak_gib(dev)}
            cmp_lines.append(f"compare {n_cmp} x {m_cmp} at {args.layer}, products in {name}: {rate:,.0f} pairs/s, "
                             f"peak {peak_gib(dev):.2f} GiB")
        # half-precision products: score difference and 2AFC decisions on fixture triplets
        cdt = torch.float16 if dev.type == "cuda" else torch.bfloat16
        d_half = max_diff(score_matrix(got, got, dtype=cdt), score_matrix(got, got))
        metric = DiffSim(DiffSim.Settings.create("diffsim-s", layer=args.layer, step=args.step, prompt=PROMPT,
                                                 size=args.size, seed=SEED, batch_size=8, cache_bytes=0), backbone=bb)
        half = metric.with_settings(compare_dtype=str(cdt)[6:])
        root = nights(folder / "fixtures", n=12)
        triplets = sorted((root / "ref").rglob("*.png"))
        flips = total = 0
        for ref in triplets:
            stem = ref.stem
            folder_d = root / "distort" / ref.parent.name
            d0, d1 = folder_d / f"{stem}_0.png", folder_d / f"{stem}_1.png"
            f = metric.embed([ref, d0, d1])
            total += 1
            flips += int(metric.decide(f[0], f[1], f[2]).item() != half.decide(f[0], f[1], f[2]).item())
        perms = list(itertools.permutations(range(len(check)), 3))
        s32, s16 = score_matrix(got, got), score_matrix(got, got, dtype=cdt)
        perm_flips = sum(int(torch.sign(s32[r, x] - s32[r, y]) != torch.sign(s16[r, x] - s16[r, y]))
                         for r, x, y in perms)
        results["compare"]["half_max_abs_diff"] = d_half
        results["compare"]["half_2afc_flips"] = {"nights_fixture": [flips, total],
                                                 "check_triplets": [perm_flips, len(perms)]}
        off = s32[~torch.eye(len(check), dtype=torch.bool, device=s32.device)]
        cmp_lines.append(f"(off-diagonal float32 scores of the check images: {float(off.min()):.4f} to "
                         f"{float(off.max()):.4f})")
        cmp_lines.append(f"compare_dtype={str(cdt)[6:]}: max |score diff| vs float32 {d_half:.1e}; 2AFC flips: "
                         f"{flips}/{total} NIGHTS-layout fixture triplets, {perm_flips}/{len(perms)} triplets of the "
                         f"check images")

    naive_rate = next((r[3] for r in table if r[0].startswith("naive")), None)
    print(f"\n{head}\n")
    mem = "peak GPU GiB" if dev.type == "cuda" else "peak RSS GiB"
    print(f"| pipeline | batch | images | images/s | vs naive | first batch s | {mem} | max abs score diff vs fp32 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, bs, n, rate, comp, peak, diff in table:
        vs = f"{rate / naive_rate:.2f}x" if naive_rate else "-"
        print(f"| {name} | {bs} | {n} | {rate:.2f} | {vs} | {'-' if comp is None else f'{comp:.1f}'} | {peak:.2f} | "
              f"{'-' if diff is None else f'{diff:.1e}'} |")
        results["rows"].append({"pipeline": name, "batch": bs, "images": n, "images_per_s": rate,
                                "first_batch_s": comp, "peak_gib": peak, "max_abs_score_diff": diff})
    for line in cmp_lines:
        print(line)
    print(f"\ntotal {time.perf_counter() - start:.0f}s")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
