"""Which pooled vector to prefilter with, and what compact features cost: measured on calibrated tiny models.

Galleries: ``--classes`` smooth random "photos" x ``--per-class`` augmentations (random crop, flip,
colour jitter; tests/tiny_gallery.py). Models: the discriminative tiny SD of tests/tiny_gallery.py
(``gallery``) and the calibrated one of tests/tiny_sharp.py (``sharp``), random weights, CPU.

Table 1, pooled vectors: every image is a query against the others (leave-one-out); the exact
DiffSim-S top-10 comes from the full score matrix; for each candidate pooled vector, the recall@10 of
its 30 nearest (inner product), and the candidates per query needed for a mean recall@10 of 0.95.

Table 2, compact features: the exact score matrix recomputed from fp16, int8 (per-channel, the store's
``--compact int8``) and single-branch features, against float32 features: largest and mean absolute
score change and top-10 agreement; bytes per image at 512 px on SD 1.5 (up0) from its feature shapes.

    python benchmarks/bench_prefilter.py                       # 26 classes x 4
    python benchmarks/bench_prefilter.py --classes 8           # quicker
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.tiny_gallery import build_discriminative_pipeline, labelled_gallery, smooth_photo  # noqa: E402
from tests.tiny_sd import build_tiny_pipeline  # noqa: E402
from tests.tiny_sharp import sharpen_pipeline  # noqa: E402

K = 10


def _norm(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.reshape(x.shape[0], -1).float(), dim=1)


def candidates_pool(metric, feats) -> dict[str, torch.Tensor]:
    """The pooled vectors compared: the metric's own and simpler token statistics."""
    from diffsim import aas

    parts: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("attn mean+std", "attn mean", "qkv mean", "k mean+std", "v mean+std")
    }
    for path in metric.layers:
        qkv = metric.qkv(feats, path)
        own = aas.attend(qkv.q, qkv.k, qkv.v)
        parts["attn mean"].append(_norm(own.mean(-2)))
        parts["qkv mean"] += [_norm(qkv.q.mean(-2)), _norm(qkv.k.mean(-2)), _norm(qkv.v.mean(-2))]
        parts["k mean+std"] += [_norm(qkv.k.mean(-2)), _norm(qkv.k.std(-2, correction=0))]
        parts["v mean+std"] += [_norm(qkv.v.mean(-2)), _norm(qkv.v.std(-2, correction=0))]
    out = {"attn mean+std (metric.pool)": metric.pool(feats).float()}
    out.update({k: _norm(torch.cat(v, dim=1)) for k, v in parts.items() if k != "attn mean+std"})
    return out


def exact_topk(s: torch.Tensor) -> list[set[int]]:
    s = s.clone()
    s.fill_diagonal_(-float("inf"))
    return [set(r) for r in torch.topk(s, K, dim=1).indices.tolist()]


def recall(pooled: torch.Tensor, truth: list[set[int]], n: int) -> float:
    sim = pooled @ pooled.T
    sim.fill_diagonal_(-float("inf"))
    cands = torch.topk(sim, min(n, len(truth) - 1), dim=1).indices.tolist()
    return float(np.mean([len(t & set(c)) / K for t, c in zip(truth, cands, strict=False)]))


def needed(pooled: torch.Tensor, truth: list[set[int]], target: float = 0.95) -> int:
    for n in range(K, len(truth)):
        if recall(pooled, truth, n) >= target:
            return n
    return len(truth) - 1


def agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    off = ~torch.eye(len(a), dtype=torch.bool)
    d = (a - b).abs()[off]
    ta, tb = exact_topk(a), exact_topk(b)
    return float(d.max()), float(d.mean()), float(np.mean([len(x & y) / K for x, y in zip(ta, tb, strict=False)]))


def sd15_bytes(mode: str, size: int = 512) -> int:
    """Feature bytes per image of DiffSim-S up0 on SD 1.5 (8 heads x 160, (size/32)^2 tokens) plus the pooled vector."""
    branches = 1 if mode == "single-branch fp16" else 2
    tokens, heads, dim = (size // 32) ** 2, 8, 160
    values = 3 * branches * heads * tokens * dim
    per = {"float32": 4, "fp16": 2, "single-branch fp16": 2, "int8": 1}[mode]
    scales = 3 * branches * heads * dim * 2 if mode == "int8" else 0
    return values * per + scales + 2 * branches * heads * dim * 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=26)
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--size", type=int, nargs="+", default=[64, 128])
    args = ap.parse_args()
    from diffsim import create_metric
    from diffsim.features import Features
    from diffsim.gallery.store import quantise_int8

    rng = np.random.default_rng(0)
    photos = [smooth_photo(rng) for _ in range(args.classes)]
    pool_rows, compact_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        gallery = labelled_gallery(Path(tmp) / "g", photos, args.per_class, out_size=128)
        files = sorted(str(p) for p in gallery.rglob("*.png"))
        models = {
            "gallery": build_discriminative_pipeline(Path(tmp) / "disc"),
            "sharp": sharpen_pipeline(build_tiny_pipeline(Path(tmp) / "tiny"), Path(tmp) / "sharp", photos[:8]),
        }
        for name, model in models.items():
            for size in args.size:
                m = create_metric(
                    "diffsim-s", model=str(model), size=size, device="cpu", dtype="float32", cache_bytes=0
                )
                feats = m.embed(files)
                s = m.compare_matrix(feats, feats).float()
                truth = exact_topk(s)
                for pname, pooled in candidates_pool(m, feats).items():
                    pool_rows.append((name, size, pname, recall(pooled, truth, 30), needed(pooled, truth)))
                half = Features({k: v.half().float() for k, v in feats.tensors.items()}, feats.config, feats.names)
                q8 = {}
                for k, v in feats.tensors.items():
                    codes, scale = quantise_int8(v)
                    q8[k] = codes.float() * scale.float()
                int8 = Features(q8, feats.config, feats.names)
                one = create_metric(
                    "diffsim-s",
                    model=str(model),
                    size=size,
                    device="cpu",
                    dtype="float32",
                    cache_bytes=0,
                    single_branch=True,
                )
                f1 = one.embed(files)
                for mode, mat in (
                    ("fp16", m.compare_matrix(half, half)),
                    ("int8", m.compare_matrix(int8, int8)),
                    ("single-branch fp16", one.compare_matrix(f1, f1)),
                ):
                    compact_rows.append((name, size, mode, *agreement(s, mat.float()), sd15_bytes(mode)))
                print(name, size, "done", file=sys.stderr, flush=True)
    n = args.classes * args.per_class
    print(
        f"{n} images ({args.classes} classes x {args.per_class}), {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}\n"
    )
    print("| model | px | pooled vector | recall@10 of top-30 | candidates for recall@10 >= 0.95 |")
    print("|---|---:|---|---:|---:|")
    for r in pool_rows:
        print("| {} | {} | {} | {:.3f} | {} |".format(*r))
    print(f"\nfloat32 features: {sd15_bytes('float32') / 1e6:.2f} MB per image at 512 px (SD 1.5, up0)\n")
    print(
        "| model | px | features | max abs score change | mean abs change | top-10 agreement | MB per image at 512 px |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in compact_rows:
        print("| {} | {} | {} | {:.2e} | {:.2e} | {:.3f} | {:.2f} |".format(*r[:6], r[6] / 1e6))


if __name__ == "__main__":
    main()
