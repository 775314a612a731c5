"""Hook path vs explicit truncated U-Net on CPU: the U-Net pass of DiffSim-S only (step 3 of extraction).

Both paths stop after the requested layer's input is known: the hook path runs ``UNet2DConditionModel``'s
own ``forward`` with a pre-hook that raises ``StopForward`` (:mod:`diffsim.backbones.capture`); the
explicit path steps through the same modules (:mod:`diffsim.backbones.unet_forward`). Random weights,
float32, the guidance pair (2 rows per image), eager (no compile). Prints a markdown table.

    python benchmarks/bench_truncation.py                # tiny U-Net (tests/tiny_sd.py layout) + SD 1.5 at 256 px
    python benchmarks/bench_truncation.py --only tiny
    python benchmarks/bench_truncation.py --only sd15 --px 512 --layers up0,down0 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: spinning ones distort a shared CPU

import torch  # noqa: E402

from diffsim.backbones.capture import capture_qkv, run_until_captured
from diffsim.backbones.layers import resolve_layers
from diffsim.backbones.unet_forward import TruncatedUNet

SD15 = {  # UNet2DConditionModel defaults are SD 1.x's layout; the cross-attention width of SD 1.5
    "sample_size": 64,
    "cross_attention_dim": 768,
}
TINY = {  # tests/tiny_sd.py's U-Net: SD 1.5's block layout, narrow
    "sample_size": 8,
    "layers_per_block": 2,
    "block_out_channels": (16, 32, 32, 32),
    "norm_num_groups": 8,
    "cross_attention_dim": 32,
    "attention_head_dim": 2,
}


def timed(fns: list, repeats: int) -> list[float]:
    """Median seconds of each function, runs interleaved (a shared CPU's load hits both alike)."""
    for fn in fns:
        fn()  # warm-up
    runs: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            runs[i].append(time.perf_counter() - start)
    return [statistics.median(r) for r in runs]


def bench(name: str, config: dict, latent: int, batch: int, layer: str, repeats: int) -> list[str]:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config).eval().requires_grad_(False)
    paths = resolve_layers(unet, [layer])
    sample = torch.randn(2 * batch, unet.config.in_channels, latent, latent)
    emb = torch.randn(2 * batch, 77, unet.config.cross_attention_dim)
    t = torch.full((2 * batch,), 501, dtype=torch.long)
    runner = TruncatedUNet(unet, tuple(paths))

    def hooks() -> None:
        with torch.no_grad(), capture_qkv(unet, paths) as store:
            run_until_captured(unet, sample, t, encoder_hidden_states=emb, return_dict=False)
        assert store

    def explicit() -> None:
        with torch.no_grad():
            runner(sample, t, emb)

    h, e = timed([hooks, explicit], repeats)
    px = latent * 8
    return [f"| {name} | {px} | {batch} | {layer} | {h * 1e3:.1f} | {e * 1e3:.1f} | {h / e:.2f} |"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", choices=("tiny", "sd15"), default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--px", type=int, default=256, help="image side of the SD 1.5 rows (latent = px / 8)")
    ap.add_argument("--layers", default="up0,mid", help="SD 1.5 rows' layers, comma-separated")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = [
        "| U-Net | px | images | layer | hooks ms | explicit ms | hooks / explicit |",
        "|---|--:|--:|---|--:|--:|--:|",
    ]
    if args.only in (None, "tiny"):
        for layer in ("up0", "down0"):
            rows += bench("tiny (tests/tiny_sd.py)", TINY, 8, 4, layer, args.repeats * 4)
    if args.only in (None, "sd15"):
        for layer in args.layers.split(","):
            rows += bench("SD 1.5 layout, random weights", SD15, args.px // 8, 1, layer, args.repeats)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, eager, load average {load}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
