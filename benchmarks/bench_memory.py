"""Peak memory of `diffsim index build`, `retrieve --prefilter` and `dedup` against the gallery size.

Each command runs as its own process (the real CLI) on a tiny calibrated SD-layout model
(tests/tiny_gallery.py) at 256 px; the peak RSS is the child's ``ru_maxrss``. A build writes each
feature once and reads none back, so its peak must not grow with the number of images.

    python benchmarks/bench_memory.py                       # 100 and 2,000 images
    python benchmarks/bench_memory.py --images 100 500      # quicker

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
            ret, _ = peak_mb([*cli, "retrieve", query, "--index", store, "--prefilter", "auto"])
            dd, _ = peak_mb([*cli, "dedup", "--index", store, "--threshold", "0.99", "--neighbours", "5"])
            rows.append((n, build, t_build, ret, dd))
    print(
        f"peak RSS (MB), {args.size} px, tiny calibrated SD-layout model, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| images | index build | build seconds | retrieve --prefilter auto | dedup |")
    print("|---:|---:|---:|---:|---:|")
    for n, b, t, r, d in rows:
        print(f"| {n} | {b:.0f} | {t:.0f} | {r:.0f} | {d:.0f} |")


if __name__ == "__main__":
    main()
