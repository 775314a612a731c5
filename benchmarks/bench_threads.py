"""Gallery build speed against torch thread counts: before (torch's default: every core) and after (the
``--threads`` default, which leaves the cores that decode workers or other work use).

Runs ``diffsim index build`` in fresh processes (``OMP_NUM_THREADS`` unset) on a gallery of smooth random
images with the tiny random-weight SD-layout model of the tests, and prints a Markdown table::

    python benchmarks/bench_threads.py                      # 48 images at 128 px
    python benchmarks/bench_threads.py --images 16 --size 64

On a machine busy with other work an OpenMP team as large as the cores spins while it waits for them:
issue 18 measured 136 s (default threads) against 9.5 s (``OMP_NUM_THREADS=1``) on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.tiny_sd
sys.path.insert(0, str(ROOT / "src"))


def _build(gallery: Path, model: Path, size: int, threads: int | None, workers: int) -> tuple[float, float, str]:
    """(images/s the build reports, wall seconds of the process, torch threads it used)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("OMP_NUM_THREADS", None)
    env.pop("MKL_NUM_THREADS", None)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "diffsim", "-v", "index", "build", str(gallery), "--out", f"{tmp}/s"]
        cmd += ["--model", str(model), "--size", str(size), "--device", "cpu", "--dtype", "float32", "-q"]
        cmd += ["--workers", str(workers)] + (["--threads", str(threads)] if threads else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
    rate = float(re.search(r"\(([\d.]+) images/s\)", proc.stdout).group(1))  # type: ignore[union-attr]
    used = re.search(r"(\d+) torch thread\(s\)", proc.stderr)
    return rate, wall, used.group(1) if used else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader decode workers")
    args = ap.parse_args()
    import torch
    from tests.tiny_sd import build_tiny_pipeline

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import make_images

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_pipeline(Path(tmp) / "model")
        gallery = Path(tmp) / "gallery"
        make_images(gallery, args.images, args.size)
        cores = len(os.sched_getaffinity(0))
        load = os.getloadavg()[0]
        print(f"{args.images} images, {args.size} px, tiny SD-layout model, {cores} cores, load {load:.1f} "
              f"(1 min), torch {torch.__version__}, --workers {args.workers}\n")
        print("| threads | torch threads used | images/s (build) | wall s (process) |")
        print("|---|---|---|---|")
        rows = [(f"before: torch default ({cores})", cores), ("--threads 1", 1), ("after: default", None)]
        for label, threads in rows:
            rate, wall, used = _build(gallery, model, args.size, threads, args.workers)
            print(f"| {label} | {used} | {rate:.1f} | {wall:.1f} |", flush=True)


if __name__ == "__main__":
    main()
