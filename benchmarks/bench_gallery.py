"""Gallery benchmark: streaming memory, rebuilds, exhaustive vs prefiltered retrieval, bytes per image.

Tiny random SD-1.5-layout model (tests/tiny_gallery.py: attention Q/K x3, VAE scaling 4, so scores
separate images), 64 px, this machine's CPU. The labelled gallery is made of augmentations (random
crop, flip, colour jitter) of real photos: the colour and grey sample images that scikit-image ships
(``pip install scikit-image``) and ``examples/*.png``; one class per source photo.

    python benchmarks/bench_gallery.py                 # 2,000 images (a few minutes on an idle 2-core CPU)
    python benchmarks/bench_gallery.py --images 400    # quicker

Prints a Markdown table. Memory is the peak RSS of a fresh process that loads the model and builds
the store (``diffsim.gallery.build.build_index``), for the small and the large gallery.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.tiny_gallery
sys.path.insert(0, str(ROOT / "src"))

from tests.tiny_gallery import augment, build_discriminative_pipeline  # noqa: E402
from tests.tiny_sd import SD15_UNET_CONFIG  # noqa: E402

SIZE = 64
SKIMAGE_PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "coins", "horse", "hubble_deep_field",
                  "immunohistochemistry", "moon", "page", "text", "rocket", "retina", "brick", "grass", "gravel",
                  "colorwheel", "clock", "cell")


def source_photos() -> list[tuple[str, Image.Image]]:
    """Real photos available offline: scikit-image's samples (if installed) and examples/*.png."""
    photos = [(p.stem, Image.open(p).convert("RGB")) for p in sorted((ROOT / "examples").glob("*.png"))]
    try:
        import skimage.data as data
    except ImportError:
        print("scikit-image is not installed: only examples/*.png as source photos", file=sys.stderr)
        return photos
    for name in SKIMAGE_PHOTOS:
        try:
            arr = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a sample that would need a download
            continue
        photos.append((name, Image.fromarray(arr).convert("RGB")))
    return photos


def make_gallery(folder: Path, photos: list[tuple[str, Image.Image]], n: int, seed: int) -> list[str]:
    """``n`` augmentations spread over the photos, ``folder/<photo>/<i>.png`` (96 px); returns the paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        name, photo = photos[i % len(photos)]
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{i:05d}.png"
        augment(photo, rng, 96).save(p)
        paths.append(str(p))
    return paths


def child_build(args: argparse.Namespace) -> None:
    """Subprocess mode: build a store in-process and print its peak memory."""
    from diffsim import create_metric
    from diffsim.gallery import GalleryStore, collect
    from diffsim.gallery.build import build_index

    metric = create_metric("diffsim-s", model=args.model, size=SIZE, device="cpu", dtype="float32", layer=args.layer)
    sources = collect(args.gallery)
    store = GalleryStore.open_or_create(args.store, metric, root=sources.root)
    r = build_index(sources, store, metric, batch_size=args.batch_size, num_workers=0)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": peak_kb / 1024, "embedded": r.embedded, "skipped": r.skipped, "seconds": r.seconds,
                      "images_per_s": r.images_per_second, "bytes": store.nbytes(), "images": len(store)}))


def run_build(model: Path, gallery: Path, store: Path, batch: int, layer: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--model", str(model), "--gallery", str(gallery), "--store",
           str(store), "--batch-size", str(batch), "--layer", layer]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def sd15_bytes_per_image(size: int = 512) -> dict[str, float]:
    """Store bytes per image for DiffSim-S (up0) on the real SD 1.5 architecture, from its feature shapes.

    up0 is the first self-attention of ``up_blocks.1`` (1280 channels, 8 heads of 160); the latent is
    size/8 and ``up_blocks.1`` works at latent / 4 (two of the three down-samplings undone), so 16 x 16 =
    256 tokens at 512 px. Features: Q, K, V x 2 guidance branches x 8 heads x 256 tokens x 160; pooled
    vector (``DiffSim.pool``): token mean and std of the own attention output, 2 x branches x 1280 float32.
    """
    channels = list(reversed(SD15_UNET_CONFIG["block_out_channels"]))[1]
    heads = SD15_UNET_CONFIG["attention_head_dim"]  # SD 1.5's config stores the head count here
    side = size // 8 // 4

    def values(branches: int) -> int:
        return 3 * branches * heads * side * side * (channels // heads)

    def pooled(branches: int) -> int:
        return 2 * branches * channels * 4

    return {"tokens": side * side, "fp32": values(2) * 4 + pooled(2), "fp16": values(2) * 2 + pooled(2),
            "fp16_single_branch": values(1) * 2 + pooled(1), "pooled": pooled(2)}


def tiny_shape_check(model_metric) -> str:
    """The same formula on the tiny model (64 px) against its actual feature shapes."""
    f = model_metric.embed(torch.rand(1, 3, SIZE, SIZE))
    shapes = {k.rsplit("/", 1)[1]: tuple(v.shape[1:]) for k, v in f.tensors.items()}
    return f"tiny model features per image: {shapes}"


def overlap(a: list[list[str]], b: list[list[str]], k: int) -> float:
    return float(np.mean([len(set(x[:k]) & set(y[:k])) / k for x, y in zip(a, b)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--prefilter", type=int, default=200)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--layer", default="up0", help="DiffSim-S layer (alias or module path).")
    ap.add_argument("--workdir", type=Path, default=None, help="Keep the galleries and stores here.")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--gallery", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_build(args)
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-gallery-"))
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model"
    if not (model / "model_index.json").exists():
        build_discriminative_pipeline(model)
    photos = source_photos()
    large = work / "gallery"
    if not large.exists():
        make_gallery(large, photos, args.images, seed=0)
    all_paths = sorted(str(p) for p in large.rglob("*.png"))
    small_list = work / "small.txt"  # a list file: the first --small images
    small_list.write_text("\n".join(str(Path(p).relative_to(work)) for p in all_paths[: args.small]) + "\n")
    qdir = work / "queries"
    if not qdir.exists():  # held-out augmentations (not in the gallery), spread over the classes
        make_gallery(qdir, photos, args.queries, seed=99)
    queries = sorted(str(p) for p in qdir.rglob("*.png"))

    rows: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    small = run_build(model, small_list, work / "store-small", args.batch_size, args.layer)
    big = run_build(model, large, work / "store", args.batch_size, args.layer)
    again = run_build(model, large, work / "store", args.batch_size, args.layer)
    rows += [
        (f"peak memory, build of {args.small} images", f"{small['peak_mb']:.0f} MB ({small['images_per_s']:.1f} images/s)"),
        (f"peak memory, build of {args.images} images", f"{big['peak_mb']:.0f} MB ({big['images_per_s']:.1f} images/s)"),
        ("difference (target <= 300 MB)", f"{big['peak_mb'] - small['peak_mb']:+.0f} MB"),
        ("second `index build` on the same gallery", f"embedded {again['embedded']}, {again['skipped']} already "
                                                      f"stored, {again['seconds']:.1f} s"),
        ("store bytes per image (tiny model, 64 px, fp32)", f"{big['bytes'] / big['images']:.0f} B"),
    ]

    from diffsim import create_metric
    from diffsim.gallery.search import Gallery

    metric = create_metric("diffsim-s", model=str(model), size=SIZE, device="cpu", dtype="float32", cache_bytes=0,
                           layer=args.layer)
    gal = Gallery.open(work / "store", metric)
    te = time.perf_counter()
    fq = gal.embed(queries)
    t_embed = time.perf_counter() - te
    k = args.top_k

    def timed(fn, repeats: int = 5):
        best, out = float("inf"), None
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
        return best, out

    tf = time.perf_counter()
    gal.faiss_index()
    t_faiss = time.perf_counter() - tf
    t_exh, exh = timed(lambda: gal.search(fq, k, names=queries))
    t_pre, pre = timed(lambda: gal.search(fq, k, prefilter=args.prefilter, names=queries))
    exh_ids = [[h.path for h in r] for r in exh]
    pre_ids = [[h.path for h in r] for r in pre]
    qlabels = [Path(q).parent.name for q in queries]
    precision = np.mean([[h.path.split("/")[0] == lab for h in r] for r, lab in zip(exh, qlabels)])
    rows += [
        (f"{len(queries)} queries: embedding them", f"{t_embed:.2f} s"),
        (f"{len(queries)} queries x {len(gal)} images, exhaustive exact top-{k}", f"{t_exh:.3f} s"),
        (f"{len(queries)} queries, `--prefilter {args.prefilter}` (faiss + exact re-rank)",
         f"{t_pre:.3f} s ({t_exh / t_pre:.1f}x faster; faiss index built once in {t_faiss:.3f} s)"),
        (f"recall@{k} of the prefiltered top-{k} vs the exhaustive one (target >= 0.9)", f"{overlap(pre_ids, exh_ids, k):.3f}"),
        (f"precision@{k} of the exhaustive ranking (same source photo; {len(photos)} classes)", f"{precision:.3f}"),
    ]

    # compact modes: fp16 storage (the store's cast) and the single guidance branch, vs exact
    ids, exact = gal.score_matrix(fq)
    half_cols = []
    for _, fg in gal.store.iter_shards():
        fh = type(fg)({n: t.half().float() for n, t in fg.tensors.items()}, fg.config, fg.names)
        half_cols.append(metric.compare_matrix(fq, fh))
    half = torch.cat(half_cols, dim=1)
    top = lambda s: [[ids[j] for j in torch.topk(r, k).indices.tolist()] for r in s]  # noqa: E731
    rows.append(("`--compact fp16`: largest score change / top-10 overlap",
                 f"{(half - exact).abs().max():.1e} / {overlap(top(half), top(exact), k):.3f}"))
    sub = all_paths[: args.prefilter]
    single = metric.with_settings(single_branch=True)
    s1 = single.matrix(queries, sub)
    s2 = metric.matrix(queries, sub)
    sub_ids = list(range(len(sub)))
    t1 = [[sub_ids[j] for j in torch.topk(r, k).indices.tolist()] for r in s1]
    t2 = [[sub_ids[j] for j in torch.topk(r, k).indices.tolist()] for r in s2]
    rho = np.mean([np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1]
                   for a, b in zip(s1.numpy(), s2.numpy())])
    rows.append((f"`--single-branch` (half the bytes and compute) vs both branches, {len(sub)} images: "
                 "Spearman / top-10 overlap", f"{rho:.3f} / {overlap(t1, t2, k):.3f}"))
    b = sd15_bytes_per_image()
    rows += [
        (f"SD 1.5, 512 px, DiffSim-S up0 ({b['tokens']} tokens): bytes per image fp32",
         f"{b['fp32'] / 1e6:.2f} MB (pooled vector {b['pooled'] / 1e3:.1f} kB of it)"),
        ("... with `--compact fp16` / fp16 + `--single-branch`", f"{b['fp16'] / 1e6:.2f} MB / {b['fp16_single_branch'] / 1e6:.2f} MB"),
    ]
    print(f"# bench_gallery: {args.images} images, {len(photos)} source photos, {SIZE} px, layer {args.layer}, "
          f"torch threads {torch.get_num_threads()}, total {time.perf_counter() - t0:.0f} s")
    print(tiny_shape_check(metric))
    print("\n| measurement | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
