"""Time and peak memory of one DiffSim loss step (forward + backward) against one embed of the same pair.

The model is the real SD 1.5 architecture with random weights (benchmarks/common.py: no download;
timings do not depend on the weights' values). Rows, each on one pair of images at ``--size``:

* ``embed``: the cached path's network pass for both images (``metric.forward``, no feature cache,
  no gradients): what ``metric.score`` costs on two new images;
* ``loss, x only``: ``loss_fn(x, y)`` + ``backward()`` with gradients to ``x`` (a fixed reference ``y``
  runs without a graph), the style-loss case;
* ``loss, x and y``: gradients to both images (one batched pass);
* ``loss, x only, checkpointed``: as the second row with ``checkpoint=True``.

Peak memory: CUDA's ``max_memory_allocated`` on a GPU; on a CPU the growth of the process' resident
set during the row (VmHWM, reset through /proc/self/clear_refs). Target: a loss step <= 3x an embed.

    python benchmarks/bench_loss.py                                   # CPU smoke, 128 px
    python benchmarks/bench_loss.py --device cuda --size 512 --dtype float16
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from common import machine, sd15_random

from diffsim import DiffSim, StableDiffusionBackbone
from diffsim.backbones.loading import prepare_components
from diffsim.devices import resolve_device, resolve_dtype

TARGET = 3.0


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _status(field: str) -> float:
    """A /proc/self/status memory field in GiB (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 0.0


def reset_peak(dev: torch.device) -> float:
    """Reset the peak-memory counter; returns the baseline (GiB) the row's peak is measured from."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        return torch.cuda.memory_allocated(dev) / 2**30
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    return _status("VmRSS")


def peak(dev: torch.device, base: float) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**30 - base
    return _status("VmHWM") - base


def timed(fn: Callable[[], Any], dev: torch.device, repeats: int) -> tuple[float, float]:
    """(median seconds, peak extra GiB) of ``fn`` after one warm-up call."""
    fn()
    sync(dev)
    times = []
    base = reset_peak(dev)
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - start)
    return statistics.median(times), peak(dev, base)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cuda (default where available) or cpu")
    ap.add_argument("--size", type=int, default=None, help="image size (default: 512 on CUDA, 128 on CPU)")
    ap.add_argument("--dtype", default=None, help="model dtype; default float16 on CUDA, float32 on CPU")
    ap.add_argument("--layer", default="up0")
    ap.add_argument("--step", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, dev)
    size = args.size or (512 if dev.type == "cuda" else 128)

    start = time.perf_counter()
    parts = prepare_components(sd15_random(), dtype, dev)
    backbone = StableDiffusionBackbone(parts, dev, dtype)
    backbone.cache_latents = False
    settings = DiffSim.Settings.create(
        "diffsim-s", layer=args.layer, step=args.step, size=size, device=str(dev), dtype=dtype, batch_size=2
    )
    metric = DiffSim(settings, backbone=backbone)
    head = (f"device: {dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}); {machine()}; "
            f"dtype {str(dtype)[6:]}; {size} px; layer {metric.layers[0]}; T {metric.timestep}; "
            f"built in {time.perf_counter() - start:.0f}s")
    print(head, flush=True)

    g = torch.Generator().manual_seed(0)
    low = torch.rand(2, 3, 8, 8, generator=g)
    pair = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    x, y = pair[:1].to(dev), pair[1:].to(dev)
    loss_fn, ckpt_fn = metric.as_loss(), metric.as_loss(checkpoint=True)

    def embed() -> None:
        with torch.no_grad():
            metric.forward(torch.cat([x, y]) * 2 - 1)

    def step(fn: Any, both: bool) -> Callable[[], None]:
        def run() -> None:
            xr = x.clone().requires_grad_(True)
            yr = y.clone().requires_grad_(both)
            fn(xr, yr).backward()

        return run

    rows = [
        ("embed (x and y, no grad)", embed),
        ("loss fwd+bwd, grad to x", step(loss_fn, False)),
        ("loss fwd+bwd, grad to x and y", step(loss_fn, True)),
        ("loss fwd+bwd, grad to x, checkpointed", step(ckpt_fn, False)),
    ]
    results: dict[str, Any] = {"header": head, "size": size, "rows": []}
    embed_s = None
    print(f"{'row':42s} {'seconds':>9s} {'x embed':>8s} {'peak GiB':>9s}")
    for name, fn in rows:
        sec, mem = timed(fn, dev, args.repeats)
        embed_s = embed_s or sec
        ratio = sec / embed_s
        results["rows"].append({"row": name, "seconds": sec, "ratio_to_embed": ratio, "peak_gib": mem})
        print(f"{name:42s} {sec:9.3f} {ratio:8.2f} {mem:9.2f}", flush=True)
    worst = max(r["ratio_to_embed"] for r in results["rows"][1:3])
    results["target"] = TARGET
    results["meets_target"] = worst <= TARGET
    print(f"loss step / embed: {worst:.2f}x (target <= {TARGET:.0f}x): {'met' if worst <= TARGET else 'NOT met'}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
