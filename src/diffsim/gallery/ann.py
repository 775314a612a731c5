"""A persisted approximate-nearest-neighbour (faiss) index over a store's pooled vectors.

Files, in the store folder::

    ann/index.faiss    the faiss index (inner product over the L2-normalised pooled vectors)
    ann/ann.json       {"kind", "requested", "n", "dim", "ids_digest", "checksum", "seconds", "bytes", "params"}

Vector ``i`` of the index is row ``i`` of the store's table. ``ids_digest`` (BLAKE2b of the first ``n``
ids) ties the index to the table: when the table has grown by appended rows (its first ``n`` ids
unchanged), the new rows are added to the index; when rows were replaced (a changed image moves to the
end of the table), the index is rebuilt. ``checksum`` is the SHA-256 of ``index.faiss``, checked when
the index is opened (a mismatch rebuilds it, with a warning), as shards are checked against the table.
Both files are written through temporary files and ``os.replace``, the index first.

Kinds (``kind="auto"`` picks by size): ``flat`` (exact inner product; below 100k vectors), ``hnsw``
(graph, 32 links; 100k-1M), ``pcaivfpq`` (a PCA to 256 dimensions, then inverted lists of
product-quantised codes whose shortlist of :data:`REFINE_FACTOR` x the vectors asked for is re-ranked
by 8-bit scalar codes of the projected vectors: faiss's ``PCA256,IVF,PQ32,Refine(SQ8)``; 1M and more),
``ivfpq`` (IVF-PQ without the PCA or the re-rank)
and ``ivf`` (inverted lists of full vectors). The vectors are read from the shards in chunks
(:meth:`GalleryStore.pool_rows`): building needs one chunk and the training sample in memory. Opened
for search, the index is memory-mapped where faiss allows (flat and HNSW codes in place, IVF lists on
disk); updates read it into memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .store import GalleryStore, _atomic_write, share_mode

logger = logging.getLogger(__name__)

ANN_DIR = "ann"
INDEX_FILE = "index.faiss"
META_FILE = "ann.json"
KINDS = ("flat", "ivf", "hnsw", "ivfpq", "pcaivfpq")
#: dimensions the ``pcaivfpq`` kind keeps (a PCA fitted on the training sample)
PCA_DIM = 256
IVF_KINDS = ("ivf", "ivfpq", "pcaivfpq")
#: below this many vectors ``auto`` keeps an exact flat index; at and above ``PQ_FROM``, IVF-PQ
FLAT_BELOW = 100_000
PQ_FROM = 1_000_000
#: vectors used to train IVF / PQ quantisers (a random sample of the table)
TRAIN_MAX = 65_536
#: ``pcaivfpq``: the IVF-PQ search proposes this many times the vectors asked for; 8-bit scalar codes re-rank them
REFINE_FACTOR = 8
#: vectors added (or searched, by dedup) per call
CHUNK = 16_384


def require_faiss() -> Any:
    """Import faiss, or say which extra installs it."""
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError('the faiss prefilter needs faiss: pip install "diffsim-metric[faiss]" (faiss-cpu)') from exc
    return faiss


def choose_kind(n: int) -> str:
    """The kind ``auto`` gives ``n`` vectors."""
    if n < FLAT_BELOW:
        return "flat"
    return "hnsw" if n < PQ_FROM else "pcaivfpq"


def _refine_of(index: Any) -> Any:
    """The ``IndexRefine`` inside ``index`` (a ``pcaivfpq`` index: PCA, then refine over IVF-PQ), or None."""
    faiss = require_faiss()
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    return inner if isinstance(inner, faiss.IndexRefine) else None


def _digest(ids: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for i in ids:
        h.update(i.encode())
        h.update(b"\0")
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _nlist(n: int) -> int:
    """Inverted lists: ~4 sqrt(n), with at least 39 training vectors each (faiss's minimum)."""
    return int(max(1, min(int(4 * math.sqrt(n)), min(n, TRAIN_MAX) // 39)))


def _pq_shape(dim: int, n: int) -> tuple[int, int]:
    """(sub-quantisers, bits): about 8 dimensions per 8-bit code, fewer bits for small training sets."""
    m = next(
        m for m in (256, 192, 160, 128, 96, 64, 48, 32, 16, 8, 4, 2, 1) if dim % m == 0 and dim // m >= 4 or m == 1
    )
    bits = int(max(1, min(8, math.floor(math.log2(max(2, n // 39))))))  # faiss wants 39 points per centroid
    return m, bits


def _new_index(kind: str, dim: int, n: int) -> tuple[Any, dict[str, int]]:
    faiss = require_faiss()
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        return faiss.IndexFlatIP(dim), {}
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, ip)
        index.hnsw.efConstruction = 80
        return index, {"M": 32}
    nlist = _nlist(n)
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "ivf":
        return faiss.IndexIVFFlat(quantizer, dim, nlist, ip), {"nlist": nlist}
    if kind == "pcaivfpq":
        # PCA does not keep inner products of centred data, but it keeps L2 distances: on the L2-normalised
        # pooled vectors (all of one length) the L2 order is the inner-product order. The PCA itself is
        # fitted in _train (it wraps this index)
        p = min(PCA_DIM, dim)
        _, bits = _pq_shape(p, min(n, TRAIN_MAX))
        m = next(m for m in (32, 16, 8, 4, 2, 1) if p % m == 0)  # 8 dimensions per code: 4-dimension codes
        index = faiss.IndexIVFPQ(faiss.IndexFlatL2(p), p, nlist, m, bits, faiss.METRIC_L2)  # train 10x slower
        index.cp.niter = index.pq.cp.niter = 10
        # the PQ shortlist is re-ranked by exact L2 over 8-bit scalar codes of the projected vectors (p bytes
        # each): 32-byte PQ codes blur the top of a dense cloud (recall@10 of 100 fell to 0.76 at 1M)
        refine = faiss.IndexRefine(index, faiss.IndexScalarQuantizer(p, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2))
        return refine, {"pca": p, "nlist": nlist, "m": m, "bits": bits, "refine_bytes": p}
    m, bits = _pq_shape(dim, min(n, TRAIN_MAX))
    return faiss.IndexIVFPQ(quantizer, dim, nlist, m, bits, ip), {"nlist": nlist, "m": m, "bits": bits}


@dataclass
class AnnInfo:
    """What ``ann.json`` records."""

    kind: str
    requested: str  # "auto" or the kind asked for
    n: int
    dim: int
    ids_digest: str
    checksum: str
    seconds: float  # time of the last (re)build or update
    bytes: int
    params: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class AnnIndex:
    """A loaded index with the store ids of its vectors; :meth:`search` returns ids."""

    def __init__(self, index: Any, ids: list[str], info: AnnInfo) -> None:
        self.index, self.ids, self.info = index, ids, info

    def __len__(self) -> int:
        return len(self.ids)

    def search_rows(self, vectors: np.ndarray, n: int) -> np.ndarray:
        """Row numbers (table order) of the ``n`` nearest stored vectors of each query vector (-1: none)."""
        faiss = require_faiss()
        n = max(1, min(int(n), len(self.ids)))
        q = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.info.kind in IVF_KINDS:  # lists visited: enough to hold ~4n vectors, at least 16
            inner = faiss.extract_index_ivf(self.index)
            nlist = int(inner.nlist)
            inner.nprobe = int(min(nlist, max(16, math.ceil(4 * n * nlist / max(1, len(self.ids))))))
            refine = _refine_of(self.index)
            if refine is not None:  # the IVF-PQ search proposes REFINE_FACTOR x n, the scalar codes keep n
                refine.k_factor = float(REFINE_FACTOR)
        if self.info.kind == "hnsw":
            self.index.hnsw.efSearch = int(max(64, 2 * n))
        _, nn = self.index.search(q, n)
        return nn

    def search(self, vectors: np.ndarray, n: int) -> list[list[str]]:
        """Ids of the ``n`` nearest stored vectors of each query vector."""
        return [[self.ids[j] for j in row if j >= 0] for row in self.search_rows(vectors, n)]


def folder(store: GalleryStore) -> Path:
    return store.folder / ANN_DIR


def read_info(store: GalleryStore) -> AnnInfo | None:
    """The recorded index description, or None (no index, or an unreadable description)."""
    path = folder(store) / META_FILE
    if not path.is_file():
        return None
    try:
        return AnnInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("ignoring the ANN index description %s (%s); the index is rebuilt", path, exc)
        return None


def _add(index: Any, store: GalleryStore, start: int, stop: int) -> None:
    for s in range(start, stop, CHUNK):
        index.add(store.pool_rows(s, min(stop, s + CHUNK)))


def _train(index: Any, store: GalleryStore, n: int, seed: int = 0) -> Any:
    """Train ``index`` on a sample of the pooled vectors; an index over fewer dimensions than the vectors
    (``pcaivfpq``) is returned wrapped behind a PCA fitted on that sample."""
    if index.is_trained:
        return index
    if n <= TRAIN_MAX:
        sample = store.pool_rows(0, n)
    else:
        sample = store.pool_take(np.sort(np.random.default_rng(seed).choice(n, size=TRAIN_MAX, replace=False)))
    if index.d < sample.shape[1]:
        faiss = require_faiss()
        pca = fit_pca(sample, index.d, seed)
        index = faiss.IndexPreTransform(pca, index)
    index.train(sample)
    return index


def fit_pca(sample: np.ndarray, dim: int, seed: int = 0, fit_max: int = 16_384) -> Any:
    """A faiss ``LinearTransform``: centring, then projection on the top ``dim`` principal directions of
    (up to ``fit_max`` rows of) ``sample``, by a randomized SVD in float32 (seconds, where an exact
    eigendecomposition of a 5120 x 5120 covariance takes minutes on one core)."""
    faiss = require_faiss()
    rows = sample[: min(len(sample), fit_max)]
    mean = rows.mean(axis=0)
    x = rows - mean
    g = np.random.default_rng(seed).standard_normal((x.shape[1], min(x.shape[1], dim + 16))).astype(np.float32)
    q, _ = np.linalg.qr(x @ g)
    q, _ = np.linalg.qr(x @ (x.T @ q))  # one power iteration
    _, _, vt = np.linalg.svd(q.T @ x, full_matrices=False)
    a = np.ascontiguousarray(vt[:dim], dtype=np.float32)
    lt = faiss.LinearTransform(x.shape[1], dim, True)
    faiss.copy_array_to_vector(a.ravel(), lt.A)
    faiss.copy_array_to_vector((-a @ mean).astype(np.float32), lt.b)
    lt.is_trained = True
    return lt


def _save(store: GalleryStore, index: Any, info: AnnInfo) -> AnnInfo:
    faiss = require_faiss()
    out = folder(store)
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".index.", suffix=".tmp")
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        share_mode(tmp)
        info.checksum = _sha256(Path(tmp))
        info.bytes = os.path.getsize(tmp)
        os.replace(tmp, out / INDEX_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _atomic_write(out / META_FILE, json.dumps(info.to_json(), indent=1).encode())
    return info


def build(store: GalleryStore, kind: str = "auto", save: bool = True) -> AnnIndex:
    """Build the index of every committed row (``kind``: auto or one of :data:`KINDS`) and save it."""
    if kind != "auto" and kind not in KINDS:
        raise ConfigError(f"ANN index kind must be auto or one of {', '.join(KINDS)}; got {kind!r}")
    t0 = time.perf_counter()
    ids = store.ids()
    n = len(ids)
    if n == 0:
        raise ConfigError(f"store {store.folder} is empty: no vector to index")
    dim = store.pool_dim()
    chosen = choose_kind(n) if kind == "auto" else kind
    index, params = _new_index(chosen, dim, n)
    index = _train(index, store, n)
    _add(index, store, 0, n)
    info = AnnInfo(chosen, kind, n, dim, _digest(ids), "", time.perf_counter() - t0, 0, params)
    if save:
        info = _save(store, index, info)
    logger.info("built a %s ANN index of %d vectors in %.2f s", chosen, n, info.seconds)
    return AnnIndex(index, ids, info)


def _read(path: Path, kind: str, mmap: bool) -> Any:
    faiss = require_faiss()
    if mmap:
        flag = faiss.IO_FLAG_MMAP if kind in IVF_KINDS else getattr(faiss, "IO_FLAG_MMAP_IFC", 0)
        try:
            return faiss.read_index(str(path), flag)
        except RuntimeError as exc:  # a faiss without memory-mapping for this kind
            logger.debug("memory-mapping %s failed (%s); reading it", path, exc)
    return faiss.read_index(str(path))


def update_index(store: GalleryStore, kind: str | None) -> str | None:
    """Bring the store's ANN index up to date (``kind`` None: the store's, or auto); returns a one-line
    report, or None when none was built (``kind="none"``, an empty store, or no faiss with ``kind`` None:
    the first prefiltered search builds it)."""
    if kind == "none" or not len(store):
        return None
    if kind is None:
        try:
            require_faiss()
        except ConfigError:
            return None
    t0 = time.perf_counter()
    info = open_index(store, kind).info
    return (
        f"ANN index: {info.kind} over {info.n} vectors of {info.dim} dimensions, "
        f"{info.bytes / 1e6:.2f} MB, ready in {time.perf_counter() - t0:.2f} s"
    )


def open_index(store: GalleryStore, kind: str | None = None, save: bool = True) -> AnnIndex:
    """The store's index, up to date with its table: loaded (memory-mapped), extended with appended
    rows, or (re)built when missing, stale, corrupt or of another kind than ``kind`` asks.

    ``kind``: None keeps what the store has (``auto`` for a new index); ``save``: write what was built
    or extended (a read-only store keeps it in memory, with a warning).
    """
    require_faiss()
    ids = store.ids()
    info = read_info(store)
    path = folder(store) / INDEX_FILE
    want = kind if kind is not None else (info.requested if info is not None else "auto")
    reason = None
    if info is None or not path.is_file():
        reason = "no index yet"
    elif want != info.requested and want != info.kind:
        reason = f"{want} asked, {info.kind} stored"
    elif want == "auto" and choose_kind(len(ids)) != info.kind:
        reason = f"{len(ids)} vectors call for {choose_kind(len(ids))}"
    elif info.n > len(ids) or _digest(ids[: info.n]) != info.ids_digest:
        reason = "the table's rows changed"
    else:
        try:
            ok = _sha256(path) == info.checksum
        except OSError:
            ok = False
        if not ok:
            logger.warning("%s does not match its checksum; rebuilding the ANN index", path)
            reason = "checksum mismatch"
    if reason is not None:
        logger.info("building the ANN index of %s (%s)", store.folder, reason)
        return _try_save(lambda s: build(store, want, save=s), save)
    assert info is not None
    if info.n == len(ids):
        return AnnIndex(_read(path, info.kind, mmap=True), ids, info)
    t0 = time.perf_counter()
    index = _read(path, info.kind, mmap=False)  # a memory-mapped index cannot grow
    _add(index, store, info.n, len(ids))
    new = AnnInfo(
        info.kind, info.requested, len(ids), info.dim, _digest(ids), "", time.perf_counter() - t0, 0, info.params
    )
    logger.info("added %d vectors to the ANN index of %s", len(ids) - info.n, store.folder)
    if save:
        try:
            new = _save(store, index, new)
        except OSError as exc:
            logger.warning("cannot write the ANN index of %s (%s); using it in memory", store.folder, exc)
    return AnnIndex(index, ids, new)


def _try_save(make: Any, save: bool) -> AnnIndex:
    if not save:
        return make(False)
    try:
        return make(True)
    except OSError as exc:
        logger.warning("cannot write the ANN index (%s); using it in memory", exc)
        return make(False)


def remove(store: GalleryStore) -> None:
    """Delete the store's index (it is rebuilt when next needed)."""
    for name in (INDEX_FILE, META_FILE):
        (folder(store) / name).unlink(missing_ok=True)
