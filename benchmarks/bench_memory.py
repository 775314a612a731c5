"""Peak memory of `diffsim index build`, `retrieve --prefilter` and `dedup` against the gallery size.

Each command runs as its own process (the real CLI) on a tiny calibrated SD-layout model
(tests/tiny_gallery.py) at 256 px; the peak RSS is the child's ``ru_maxrss``. A build writes each
feature once and reads none back, so its peak must not grow with the number of images.

    python benchmarks/bench_memory.py                       # 100 and 2,000 images
    python benchmarks/bench_memory.py --images 100 500      # quicker
    python benchmarks/bench_memory.py --images 100 --synthetic 100 2000 20000 --size 128

``--synthetic N``: the build's runner, shard writer, table and ANN index (the real code from `run_build`
on), fed with random features of the tiny model's real shapes at ``--size`` instead of the network (which
holds one batch whatever N): a row at 20,000 images in minutes on a CPU. Its peak RSS is read from
``/proc/self/status`` (``VmHWM``) and the anonymous/file split from ``/proc/self/smaps_rollup``.

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.tiny_gallery

from tests.tiny_gallery import build_discriminative_pipeline, smooth_photo  # noqa: E402

CHILD = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if r.returncode:
    sys.exit(r.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_mb(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one command run in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, *cmd], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024, time.perf_counter() - t0


SYNTHETIC = """
import sys, json
import torch
from diffsim import create_metric
from diffsim.gallery import ann
from diffsim.gallery.readers import GalleryInput
from diffsim.gallery.runner import Outcome, run_build
from diffsim.gallery.writer import ShardWriter

model, size, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
metric = create_metric("diffsim-s", model=model, size=size, device="cpu", dtype="float32", cache_bytes=0)
one = metric.embed([torch.rand(3, size, size)])  # the real shapes, once


class SyntheticEngine:
    name, commit_every = "synthetic", 30.0

    def check(self, metric):
        pass

    def run(self, inp, store, metric, known, keep):
        writer = ShardWriter(store, None)
        g = torch.Generator().manual_seed(0)
        for s in range(0, n, 8):
            ids = [f"{i:06d}" for i in range(s, min(n, s + 8))]
            feats = one.__class__({k: torch.randn(len(ids), *v.shape[1:], generator=g) for k, v in one.tensors.items()},
                                  one.config, ids)
            pooled = metric.pool(feats)
            out = Outcome(embedded=len(ids))
            for j, i in enumerate(ids):
                for rec in writer.add(i, i, "h" + i, feats[j], pooled[j : j + 1]):
                    out.rows += rec.rows
            yield out
        yield Outcome(rows=[r for rec in writer.finish() for r in rec.rows])


inp = GalleryInput("files", ("synthetic",), root=None, total=n)
report = run_build(inp, out, metric, SyntheticEngine())
ann.update_index(report.store, None)
roll = {l.split()[0].rstrip(":"): int(l.split()[1]) // 1024 for l in open("/proc/self/smaps_rollup") if l.split()[0]
        in ("Rss:", "Anonymous:", "Pss_File:")}
hwm = next(int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"peak": hwm, **roll, "mb_per_image": report.store.nbytes() / n / 1e6}))
"""


def synthetic_peak(model: Path, size: int, n: int, out: Path) -> tuple[dict, float]:
    """(the synthetic build's memory figures, seconds) in a fresh process."""
    import json

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", SYNTHETIC, str(model), str(size), str(n), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(r.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def make_gallery(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        smooth_photo(rng, size).save(folder / f"{i:05d}.png")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, nargs="+", default=[100, 2000])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--synthetic", type=int, nargs="*", default=[], help="synthetic-feature build rows (see above)")
    ap.add_argument("--skip-queries", action="store_true", help="build rows only (no retrieve / dedup)")
    args = ap.parse_args()
    cli = [sys.executable, "-m", "diffsim"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = build_discriminative_pipeline(Path(tmp) / "model")
        flags = ["--model", str(model), "--size", str(args.size), "--device", "cpu", "--dtype", "float32"]
        for n in args.images:
            gallery = make_gallery(Path(tmp) / f"g{n}", n, args.size)
            store = str(Path(tmp) / f"s{n}")
            build, t_build = peak_mb([*cli, "index", "build", str(gallery), "--out", store, *flags, "-q"])
            query = str(gallery / "00000.png")
            ret = dd = float("nan")
            if not args.skip_queries:
                ret, _ = peak_mb([*cli, "retrieve", query, "--index", store, "--prefilter", "auto"])
                dd, _ = peak_mb([*cli, "dedup", "--index", store, "--threshold", "0.99", "--neighbours", "5"])
            rows.append((n, build, t_build, ret, dd))
        synth = [(n, *synthetic_peak(model, args.size, n, Path(tmp) / f"syn{n}")) for n in args.synthetic]
    print(
        f"peak RSS (MB), {args.size} px, tiny calibrated SD-layout model, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| images | index build | build seconds | retrieve --prefilter auto | dedup |")
    print("|---:|---:|---:|---:|---:|")
    for n, b, t, r, d in rows:
        print(f"| {n} | {b:.0f} | {t:.0f} | {r:.0f} | {d:.0f} |")
    if synth:
        print(f"\nsynthetic features of the tiny model's shapes at {args.size} px through run_build (no network):\n")
        print("| images | peak RSS MB | RSS at end MB | anonymous MB | file-backed MB | store MB per image | seconds |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for n, d, t in synth:
            print(
                f"| {n} | {d['peak']} | {d['Rss']} | {d['Anonymous']} | {d['Pss_File']} "
                f"| {d['mb_per_image']:.3f} | {t:.0f} |"
            )


if __name__ == "__main__":
    main()
