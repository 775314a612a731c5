"""Scale benchmark: the ANN index against N, and exact re-ranking of real-size features.

Part A (index): N synthetic pooled vectors of the real DiffSim-S size on SD 1.5 up0 (D = 5120: token
mean and std of the own attention output, 2 guidance branches x 1280 channels), drawn from clusters in
a 64-dimensional latent space (neighbourhoods like those of real image embeddings, not uniform noise),
with 1% planted near-duplicates (a copy of another vector plus 1% noise). For each N and index kind:
build seconds, index bytes, peak RSS growth, ANN query latency p50/p95 (one query per call, 100
candidates), recall@10 of those 100 candidates against the exact inner-product top-10, and the share of
planted twins found among a vector's 10 nearest.

Part B (re-rank): a store of M images holding real-size DiffSim-S features (SD 1.5 up0 at 512 px: Q, K,
V x 2 branches x 8 heads x 256 tokens x 160, fp16) with a real DiffSim-S metric over them (the tiny
calibrated model's metric: the scores depend only on the stored features); latency of one query
re-ranked against C candidates (rows read memory-mapped from the shards, then compared), p50/p95.

    python benchmarks/bench_scale.py                          # N = 10k, 50k; M = 300
    python benchmarks/bench_scale.py --n 10000 --images 100   # quicker

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread: a shared 2-core machine
    os.environ.setdefault(_var, "1")

import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.tiny_gallery import build_discriminative_pipeline  # noqa: E402

DIM = 5120  # DiffSim-S pooled vector on SD 1.5 up0: 2 (mean, std) x 2 branches x 1280
SD15_UP0 = (2, 8, 256, 160)  # branches, heads, tokens at 512 px, head dim


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_pooled(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) unit vectors from 200 clusters of a 64-d latent space, and the planted twin pairs (i, j)."""
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((64, dim)).astype(np.float32) / 8
    centres = rng.standard_normal((200, 64)).astype(np.float32)
    latent = centres[rng.integers(0, 200, n)] + 0.6 * rng.standard_normal((n, 64)).astype(np.float32)
    x = latent @ proj + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
    twins = rng.choice(n, size=(max(1, n // 100), 2), replace=False)
    x[twins[:, 1]] = x[twins[:, 0]] + 0.01 * np.linalg.norm(
        x[twins[:, 0]], axis=1, keepdims=True
    ) * rng.standard_normal((len(twins), dim)).astype(np.float32) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, twins


class VectorStore:
    """Just what :mod:`diffsim.gallery.ann` reads from a store: ids, pooled vectors by row, and a folder."""

    def __init__(self, folder: Path, vecs: np.ndarray) -> None:
        self.folder, self.vecs = folder, vecs

    def ids(self) -> list[str]:
        return [f"{i:08d}" for i in range(len(self.vecs))]

    def pool_rows(self, start: int, stop: int) -> np.ndarray:
        return np.ascontiguousarray(self.vecs[start:stop])

    def pool_take(self, rows) -> np.ndarray:
        return np.ascontiguousarray(self.vecs[np.asarray(rows)])

    def pool_dim(self) -> int:
        return int(self.vecs.shape[1])


class ChunkedVectors:
    """The vectors of :func:`synthetic_pooled`'s distribution for any N, generated ``chunk`` at a time
    (the same clusters for every chunk; 1% planted twins inside each chunk)."""

    def __init__(self, n: int, dim: int, chunk: int = 4096, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n, self.dim, self.chunk, self.seed = n, dim, chunk, seed
        self.proj = rng.standard_normal((64, dim)).astype(np.float32) / 8
        self.centres = rng.standard_normal((200, 64)).astype(np.float32)

    def block(self, m: int, rng: np.random.Generator) -> np.ndarray:
        """``m`` unit vectors of the distribution (no twins)."""
        x = self._raw(m, rng)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def _raw(self, m: int, rng: np.random.Generator) -> np.ndarray:
        """Unnormalised vectors, drawn in float32 (drawing float64 then casting took most of a chunk's time)."""
        latent = self.centres[rng.integers(0, 200, m)] + 0.6 * rng.standard_normal((m, 64), dtype=np.float32)
        x = rng.standard_normal((m, self.dim), dtype=np.float32)
        x *= 0.05
        x += latent @ self.proj
        return x

    def __iter__(self):
        for c, start in enumerate(range(0, self.n, self.chunk)):
            m = min(self.n, start + self.chunk) - start
            rng = np.random.default_rng((self.seed, c))
            x = self._raw(m, rng)
            twins = rng.choice(m, size=(max(1, m // 100), 2), replace=False)
            x[twins[:, 1]] = x[twins[:, 0]] + 0.01 * np.linalg.norm(
                x[twins[:, 0]], axis=1, keepdims=True
            ) * rng.standard_normal((len(twins), self.dim)).astype(np.float32) / np.sqrt(self.dim)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            yield start, x, twins + start


QUERY_CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from diffsim.gallery import ann
from diffsim.gallery.store import GalleryStore
t0 = time.perf_counter()
store = GalleryStore.open(sys.argv[2])
index = ann.open_index(store)
open_s = time.perf_counter() - t0
q = np.load(sys.argv[3])
single, found = [], []
for v in q:
    t0 = time.perf_counter()
    found.append(index.search_rows(v[None], 100)[0].tolist())
    single.append(time.perf_counter() - t0)
t0 = time.perf_counter()
index.search_rows(q, 100)
batched = (time.perf_counter() - t0) / len(q)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"open_s": open_s, "single": single, "batched": batched, "found": found,
                  "rss_mb": hwm / 1024, "kind": index.info.kind}))
"""


def part_c(ns: list[int], kind: str, queries: int, tmp: Path) -> list[tuple]:
    """Real stores of N synthetic pooled vectors, written in shards of 4,096; the ANN index built from the
    shards; then a fresh process opens the store and queries it (its peak RSS is the query's memory)."""
    import json
    import subprocess

    from diffsim import create_metric
    from diffsim.features import Features
    from diffsim.gallery import GalleryStore, ann

    model = build_discriminative_pipeline(tmp / "model-c")
    metric = create_metric("diffsim-s", model=str(model), size=64, device="cpu", dtype="float32", cache_bytes=0)
    rows = []
    for n in ns:
        store = GalleryStore.create(tmp / f"c{n}", metric)
        gen = ChunkedVectors(n, DIM)
        qvecs = gen.block(queries, np.random.default_rng((1, n)))  # new images of the same distribution
        best = np.full((queries, 10), -np.inf, dtype=np.float32)
        best_i = np.zeros((queries, 10), dtype=np.int64)
        t0 = time.perf_counter()
        for start, x, _twins in gen:
            m = len(x)
            ids = [f"{i:08d}" for i in range(start, start + m)]
            feats = Features({"placeholder": torch.zeros(m, 1, dtype=torch.uint8)}, {}, ids)
            store.add_shard(store.write_shard(ids, ids, ["h"] * m, feats, x))
            # running exact top-10 of the queries
            cat_s = np.concatenate([best, qvecs @ x.T], 1)
            top = np.argpartition(-cat_s, 9, axis=1)[:, :10]  # the set is what recall needs, not its order
            best = np.take_along_axis(cat_s, top, 1)
            best_i = np.where(top < 10, np.take_along_axis(best_i, np.minimum(top, 9), 1), top - 10 + start)
            shard_no = start // gen.chunk
            if shard_no % 64 == 0:  # as a build's TableWriter commits every 30 s
                store.commit()
            if shard_no % 8 == 0:
                print(
                    f"C wrote {start + m} of {n} in {time.perf_counter() - t0:.0f} s (load {os.getloadavg()[0]:.1f})",
                    file=sys.stderr,
                    flush=True,
                )
            del x
        store.commit()
        write_s = time.perf_counter() - t0
        exact = best_i.tolist()
        print(f"C wrote {n} in {write_s:.0f} s; building the index", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        built = ann.build(store, kind)
        build_s = time.perf_counter() - t0
        print(f"C index built in {build_s:.0f} s; querying in a fresh process", file=sys.stderr, flush=True)
        build_rss = rss_mb()
        del built
        np.save(tmp / "q.npy", qvecs)
        out = subprocess.run(
            [sys.executable, "-c", QUERY_CHILD, str(ROOT / "src"), str(store.folder), str(tmp / "q.npy")],
            capture_output=True,
            text=True,
            check=True,
        )
        doc = json.loads(out.stdout.strip().splitlines()[-1])
        recall = np.mean([len(set(e) & set(f)) / 10 for e, f in zip(exact, doc["found"], strict=True)])
        disk = store.nbytes() + ann.read_info(store).bytes
        rows.append(
            (
                n,
                doc["kind"],
                write_s,
                build_s,
                disk / 1e9,
                ann.read_info(store).bytes / 1e6,
                build_rss,
                doc["rss_mb"],
                doc["open_s"],
                1e3 * np.percentile(doc["single"], 50),
                1e3 * np.percentile(doc["single"], 95),
                1e3 * doc["batched"],
                recall,
            )
        )
        print("C", rows[-1], file=sys.stderr, flush=True)
        import shutil

        shutil.rmtree(store.folder)
    return rows


def part_a(ns: list[int], kinds: list[str], queries: int, tmp: Path) -> list[tuple]:
    from diffsim.gallery import ann

    rows = []
    for n in ns:
        vecs, twins = synthetic_pooled(n, DIM)
        qi = np.random.default_rng(1).choice(n, size=queries, replace=False)
        exact = np.argsort(-(vecs[qi] @ vecs.T), axis=1)[:, 1:11]  # the query itself excluded
        for kind in kinds:
            store = VectorStore(tmp / f"a{n}-{kind}", vecs)
            (store.folder).mkdir(parents=True, exist_ok=True)
            before = rss_mb()
            t0 = time.perf_counter()
            built = ann.build(store, kind)  # type: ignore[arg-type]
            build_s = time.perf_counter() - t0
            index = ann.open_index(store, kind)  # type: ignore[arg-type]  # as a search opens it: memory-mapped
            lat = []
            found = []
            for q in qi:
                t0 = time.perf_counter()
                found.append(index.search_rows(vecs[q : q + 1], 100)[0])
                lat.append(time.perf_counter() - t0)
            recall = np.mean([len(set(e) & set(f)) / 10 for e, f in zip(exact, found, strict=False)])
            near = index.search_rows(vecs[twins[:, 0]], 10)
            twin_found = np.mean([t in row for t, row in zip(twins[:, 1], near, strict=False)])
            rows.append(
                (
                    n,
                    built.info.kind,
                    build_s,
                    built.info.bytes / 1e6,
                    rss_mb() - before,
                    1e3 * np.percentile(lat, 50),
                    1e3 * np.percentile(lat, 95),
                    recall,
                    twin_found,
                )
            )
            print("A", rows[-1], file=sys.stderr, flush=True)
            del index, built
    return rows


def part_b(images: int, candidates: list[int], queries: int, tmp: Path) -> tuple[list[tuple], float, float]:
    from diffsim import create_metric
    from diffsim.features import Features
    from diffsim.gallery import GalleryStore
    from diffsim.gallery.search import Gallery

    model = build_discriminative_pipeline(tmp / "model")
    metric = create_metric("diffsim-s", model=str(model), size=64, device="cpu", dtype="float32", cache_bytes=0)
    layer = metric.layers[0]
    store = GalleryStore.create(tmp / "b", metric, compact="fp16")
    g = torch.Generator().manual_seed(0)
    per_shard = 64
    t0 = time.perf_counter()
    for s in range(0, images, per_shard):
        m = min(images, s + per_shard) - s
        tensors = {f"{layer}/{p}": torch.randn(m, *SD15_UP0, generator=g) for p in "qkv"}
        feats = Features(tensors, metric.feature_config(), [f"{i:06d}" for i in range(s, s + m)])
        ids = feats.names
        store.add_shard(store.write_shard(ids, ids, ["h"] * m, feats, metric.pool(feats)))
    store.commit()
    write_s = time.perf_counter() - t0
    per_image_mb = store.nbytes() / images / 1e6
    gal = Gallery(GalleryStore.open(store.folder), metric)
    rng = np.random.default_rng(2)
    all_ids = store.ids()
    fq = store.load(all_ids[:queries])  # stored images as queries
    rows = []
    for c in candidates:
        cands = [list(rng.choice(all_ids, size=min(c, images), replace=False)) for _ in range(queries)]
        lat = []
        for q in range(queries):  # one query per call
            t0 = time.perf_counter()
            gal.rerank(fq[q], cands[q : q + 1], 10)
            lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        gal.rerank(fq, cands, 10)  # every query in one call: a block reads each candidate shard once
        batched = time.perf_counter() - t0
        rows.append(
            (
                c,
                1e3 * np.percentile(lat, 50),
                1e3 * np.percentile(lat, 95),
                1e3 * np.median(lat) / c,
                queries / sum(lat),
                queries / batched,
            )
        )
        print("B", rows[-1], file=sys.stderr, flush=True)
    return rows, per_image_mb, images * per_image_mb / write_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="*", default=[10_000, 50_000])
    ap.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivf", "ivfpq"])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--images", type=int, default=300, help="Part B store size (0: skip part B)")
    ap.add_argument("--candidates", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--dir", default=None, help="Where to write (default: a temporary folder)")
    ap.add_argument(
        "--store-from",
        type=int,
        default=50_000,
        help="N at and above this: part C (a real store written in chunks, index built from its shards)",
    )
    ap.add_argument("--store-kind", default="pcaivfpq", help="ANN kind of part C")
    args = ap.parse_args()
    small = [n for n in args.n if n < args.store_from]
    big = [n for n in args.n if n >= args.store_from]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        c = part_c(big, args.store_kind, args.queries, Path(tmp)) if big else []
        a = part_a(small, args.kinds, args.queries, Path(tmp)) if small else []
        b = part_b(args.images, args.candidates, 5, Path(tmp)) if args.images else None
    print(f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}\n")
    print(
        "| N | kind | build s | index MB | RSS growth MB | query p50 ms | query p95 ms | recall@10 of top-100 "
        "| planted twin in top-10 |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in a:
        print("| {} | {} | {:.1f} | {:.0f} | {:.0f} | {:.2f} | {:.2f} | {:.3f} | {:.3f} |".format(*r))
    if c:
        print(
            "\n| N | kind | write s | index build s | disk GB | index MB | build peak RSS MB "
            "| query process peak RSS MB | open s | query p50 ms | query p95 ms | batched ms/query "
            "| recall@10 of top-100 |"
        )
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in c:
            print(
                (
                    "| {:,} | {} | {:.0f} | {:.0f} | {:.1f} | {:.0f} | {:.0f} | {:.0f} | {:.1f} | {:.2f} | {:.2f} "
                    "| {:.3f} | {:.3f} |"
                ).format(*r)
            )
    if b is not None:
        rows, mb, mbs = b
        print(
            f"\nre-rank, {args.images} real-size images ({mb:.2f} MB each in fp16; written at {mbs:.0f} MB/s), CPU:\n"
        )
        print("| candidates | p50 ms | p95 ms | ms per candidate | queries/s one per call | queries/s batched |")
        print("|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print("| {} | {:.0f} | {:.0f} | {:.1f} | {:.3f} | {:.3f} |".format(*r))


if __name__ == "__main__":
    main()
