"""Compact token features: bytes per image and top-10 agreement with exact AAS re-ranking, per mode.

Every row is :func:`diffsim.gallery.compact_eval.evaluate_compact` (what ``diffsim index eval-compact``
prints) on a sample of an exact store: each sampled image is a query, its exact features against the
other sampled images' exact features (the reference ranking) and against their compact features encoded
and decoded in memory (a pca mode fitted on the same sample, as a build fits on its first images).

* tiny: the calibrated tiny SD model (tests/tiny_gallery.py ``build_discriminative_pipeline``) on a
  labelled gallery (smooth random "photos", augmented), at 128 and 256 px. Its layer has 2 heads x 16 = 32
  channels and 4 x 4 / 8 x 8 tokens, so the pca modes here keep 4-16 of 32 channels (pca32: all of them).
* real-size: synthetic SD 1.5 up0 features at 512 px (Q, K, V x 2 branches x 8 heads x 256 tokens x 160,
  stored fp16), drawn as clusters: a cluster's token grid is smooth (an 8 x 8 grid upsampled to 16 x 16)
  with a decaying channel spectrum (eigenvalue i ~ i^-1.5) in a random channel basis; an image is its
  cluster's tokens plus as much smooth noise and 0.3 of that in per-token noise. Random-weight and
  synthetic features are not real features: measure a mode on your own store with
  ``diffsim index eval-compact`` before trusting it.

    nice -n 10 python benchmarks/bench_compact.py               # about 6 minutes on 2 shared cores
    nice -n 10 python benchmarks/bench_compact.py --real 16 --queries 4   # quicker

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread: a shared 2-core machine
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.tiny_gallery import build_discriminative_pipeline, labelled_gallery, smooth_photo  # noqa: E402

SD15_UP0 = (2, 8, 256, 160)  # branches, heads, tokens at 512 px, head dim
# pca32 keeps every channel of the tiny layer: pca32-pool2-int8 isolates the pooling
TINY_MODES = ("fp16", "int8", "pca16-int8", "pca8-int8", "pca32-pool2-int8", "pca8-pool2-int8", "pca4-pool2-int8")
REAL_MODES = ("int8", "pca128-int8", "pca64-int8", "pca64-pool2-int8", "pca32-pool2-int8")  # the store is fp16


def tiny(size: int, classes: int, per_class: int, tmp: Path) -> str:
    from diffsim import create_metric
    from diffsim.gallery import GalleryStore, collect
    from diffsim.gallery.build import build_index
    from diffsim.gallery.compact_eval import evaluate_compact, table

    model = tmp / "model"
    if not model.exists():
        build_discriminative_pipeline(model)
    rng = np.random.default_rng(1)
    gallery = labelled_gallery(tmp / f"g{size}", [smooth_photo(rng) for _ in range(classes)], per_class)
    metric = create_metric("diffsim-s", model=str(model), size=size, device="cpu", dtype="float32", cache_bytes=0)
    src = collect(gallery)
    store = GalleryStore.create(tmp / f"s{size}", metric, root=src.root)
    build_index(src, store, metric)
    n = len(store)
    t0 = time.perf_counter()
    res = evaluate_compact(store, metric, n, TINY_MODES)
    print(f"tiny {size}px: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return f"### Tiny calibrated model, {size} px ({classes} classes x {per_class})\n\n" + table(res, n, 10)


def synthetic(n: int, clusters: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Q/K/V of ``n`` images at SD 1.5 up0 size (float32), ``clusters`` groups (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    b, h, t, d = SD15_UP0
    c = h * d
    out = {}

    def draw(m: int, smooth: bool, spectrum: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        if smooth:
            low = torch.randn(m * b, c, 8, 8, generator=g)
            grid = torch.nn.functional.interpolate(low, size=(16, 16), mode="bilinear", align_corners=False)
            x = grid.reshape(m, b, c, t).transpose(-1, -2)
        else:
            x = torch.randn(m, b, t, c, generator=g)
        return (x * spectrum) @ basis.T  # (m, b, t, c)

    for name in "qkv":
        basis, _ = torch.linalg.qr(torch.randn(c, c, generator=g))
        spectrum = (torch.arange(c) + 1.0) ** -0.75
        spectrum = spectrum / spectrum.pow(2).mean().sqrt()
        centres = draw(clusters, True, spectrum, basis)
        noise = 1.0 * draw(n, True, spectrum, basis) + 0.3 * draw(n, False, spectrum, basis)
        x = centres[torch.arange(n) % clusters] + noise
        out[name] = x.reshape(n, b, t, h, d).movedim(-2, -3).contiguous()  # (n, b, h, t, d)
    return out


def real_size(n: int, queries: int, clusters: int, tmp: Path) -> str:
    from diffsim import create_metric
    from diffsim.features import Features
    from diffsim.gallery import GalleryStore
    from diffsim.gallery.compact_eval import evaluate_compact, table

    model = tmp / "model"
    if not model.exists():
        build_discriminative_pipeline(model)
    metric = create_metric("diffsim-s", model=str(model), size=64, device="cpu", dtype="float32", cache_bytes=0)
    layer = metric.layers[0]
    store = GalleryStore.create(tmp / "real", metric, compact="fp16")
    qkv = synthetic(n, clusters)
    ids = [f"{i:05d}" for i in range(n)]
    feats = Features({f"{layer}/{p}": v for p, v in qkv.items()}, metric.feature_config(), ids)
    store.add_shard(store.write_shard(ids, ids, ["h"] * n, feats, metric.pool(feats)))
    store.commit()
    t0 = time.perf_counter()
    res = evaluate_compact(store, metric, n, REAL_MODES, queries=queries)
    print(f"real-size: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    head = f"### Synthetic real-size SD 1.5 up0 features, fp16 store ({clusters} clusters)\n\n"
    return head + table(res, n, 10, queries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[128, 256], help="tiny-model image sizes")
    ap.add_argument("--classes", type=int, default=8, help="tiny gallery: classes (photos)")
    ap.add_argument("--per-class", type=int, default=6, help="tiny gallery: augmentations per class")
    ap.add_argument("--real", type=int, default=32, help="real-size sample images (0: skip)")
    ap.add_argument("--queries", type=int, default=6, help="real-size: queries among them (each costs --real AAS)")
    ap.add_argument("--clusters", type=int, default=16, help="real-size clusters")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for size in args.sizes:
            print(tiny(size, args.classes, args.per_class, tmp) + "\n", flush=True)
        if args.real:
            print(real_size(args.real, args.queries, args.clusters, tmp), flush=True)


if __name__ == "__main__":
    main()
