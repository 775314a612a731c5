"""Images/s of `index build` with the local engine and the Ray engine (1 and 2 embedding actors).

Tiny random SD-layout model (tests/tiny_gallery.py), 64 px images, a local Ray on this machine's CPUs.
Each row is one build into a fresh store: "images/s" over the whole build (for Ray: starting the actors,
each of which loads the model, but not starting Ray itself), and "steady images/s" from the first
results to the last (Ray rows). The local engine runs with torch's default threads and with one
(Ray sets OMP_NUM_THREADS to an actor's CPUs). Usage: python benchmarks/bench_ray.py [--images 1000]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import make_images  # noqa: E402
from tests.tiny_gallery import build_discriminative_pipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs given to the local Ray")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import ray
    import torch

    from diffsim.gallery import GalleryStore, collect
    from diffsim.gallery.build import build_index
    from diffsim.gallery.runner import run_build
    from diffsim.registry import create_metric
    from diffsim.scale.inputs import ray_input
    from diffsim.scale.ray_engine import RayEngine, RayOptions

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    model = build_discriminative_pipeline(tmp / "model")
    make_images(tmp / "gallery", args.images, 64)
    src = collect(str(tmp / "gallery"))
    dtype = "float16" if args.device.startswith("cuda") else "float32"
    metric = create_metric("diffsim-s", model=str(model), size=64, device=args.device, dtype=dtype,
                           batch_size=args.batch_size)
    rows = []

    threads = torch.get_num_threads()
    for n_threads in dict.fromkeys((threads, 1)):  # Ray sets OMP_NUM_THREADS to an actor's CPUs (here 1)
        torch.set_num_threads(n_threads)
        t = time.perf_counter()
        store = GalleryStore.create(tmp / f"local{n_threads}", metric, root=src.root)
        rep = build_index(src, store, metric, batch_size=args.batch_size, shard_size=args.shard_size)
        rows.append((f"local (this process, {n_threads} torch thread{'s' if n_threads > 1 else ''})", rep.embedded,
                     time.perf_counter() - t, None))
    torch.set_num_threads(threads)

    ray.init(num_cpus=args.cpus, num_gpus=torch.cuda.device_count(), include_dashboard=False, log_to_driver=False)
    gpus = 1.0 if args.device.startswith("cuda") else 0.0
    for workers in (1, 2):
        if gpus and workers > torch.cuda.device_count():
            gpus = torch.cuda.device_count() / workers
        first: list[tuple[float, int]] = []

        def seen(n: int) -> None:
            if not first:
                first.append((time.perf_counter(), n))

        t = time.perf_counter()
        store = GalleryStore.create(tmp / f"ray{workers}", metric, root=src.root)
        engine = RayEngine(RayOptions(workers=workers, gpus_per_worker=gpus, shard_size=args.shard_size),
                           args.batch_size)
        rep = run_build(ray_input(str(tmp / "gallery")), store, metric, engine, on_batch=seen)
        end = time.perf_counter()
        steady = (rep.embedded - first[0][1]) / (end - first[0][0]) if first and end > first[0][0] else None
        rows.append((f"ray, {workers} worker{'s' if workers > 1 else ''}", rep.embedded, end - t, steady))
    ray.shutdown()

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"ray {ray.__version__}, device {args.device}; {args.images} images at 64 px, tiny SD-layout model; "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print("| engine | images | seconds | images/s | steady images/s |")
    print("|---|---:|---:|---:|---:|")
    for name, n, s, steady in rows:
        print(f"| {name} | {n} | {s:.1f} | {n / s:.1f} | {f'{steady:.1f}' if steady else '-'} |")


if __name__ == "__main__":
    main()
