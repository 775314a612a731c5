"""Retrieval over a gallery store: exact scores streamed over shards, or a faiss prefilter + exact re-rank.

Exhaustive search compares the queries with every stored image, one shard (and at most ``block``
images) at a time, keeping a running top-k, so memory stays bounded by the shard size. With
``prefilter=N``, a faiss inner-product index over the pooled vectors proposes N candidates per query
and only those are scored exactly. Top-k follows the metric's polarity (``higher_is_better``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bounds import check_int
from ..errors import ConfigError, ImageError, StoreError
from ..features import Features
from ..images import ImagesLike, as_list, describe
from .store import GalleryStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """One retrieved image: ``rank`` 1 is the best; ``path`` is the id as indexed, ``file`` the file read."""

    query: str
    rank: int
    path: str
    score: float
    file: str


def require_faiss() -> Any:
    """Import faiss, or say which extra installs it."""
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError('the faiss prefilter needs faiss: pip install "diffsim-metric[faiss]" (faiss-cpu)') from exc
    return faiss


def metric_for(store: GalleryStore, **runtime: Any) -> Any:
    """The store's metric, rebuilt from its settings (``runtime``: e.g. ``device=``, ``batch_size=``)."""
    from ..registry import create_metric

    metric = create_metric(store.metric_name, **{**store.metric_settings, **runtime})
    store.check_metric(metric)
    return metric


#: feature bytes of the stored images compared in one call (``block=None``)
BLOCK_BYTES = 256 * 1024**2


def _topk(scores: torch.Tensor, k: int, higher: bool) -> tuple[torch.Tensor, torch.Tensor]:
    k = min(k, scores.shape[-1])
    return torch.topk(scores, k, dim=-1, largest=higher, sorted=True)


class Gallery:
    """Search a gallery store with its metric."""

    def __init__(self, store: GalleryStore, metric: Any, block: int | None = None) -> None:
        store.check_metric(metric)
        self.store, self.metric, self.block = store, metric, block
        self._paths: dict[str, str] | None = None
        self._faiss: Any = None
        self._faiss_ids: list[str] = []

    @classmethod
    def open(cls, store: str | os.PathLike | GalleryStore, metric: Any = None, **runtime: Any) -> Gallery:
        """Open a store folder; the metric is rebuilt from the store's settings unless given."""
        st = store if isinstance(store, GalleryStore) else GalleryStore.open(store)
        return cls(st, metric if metric is not None else metric_for(st, **runtime))

    @property
    def higher_is_better(self) -> bool:
        return bool(self.metric.higher_is_better)

    def __len__(self) -> int:
        return len(self.store)

    def block_for(self, feats: Features) -> int:
        """Stored images (or query-candidate pairs) per compare call: ``block``, or ~``BLOCK_BYTES`` of features."""
        if self.block is not None:
            return self.block
        per_image = max(1, feats.nbytes // max(1, len(feats)))
        return int(max(1, min(8192, BLOCK_BYTES // per_image)))

    def file_of(self, id_: str) -> str:
        if self._paths is None:
            t = self.store.table()
            self._paths = dict(zip(t.column("id").to_pylist(), t.column("path").to_pylist(), strict=False))
        return self._paths.get(id_, id_)

    # ------------------------------------------------------------------ queries
    def embed(self, images: ImagesLike) -> Features:
        """Features of query images (files are checked first: a missing one is an :class:`ImageError`)."""
        items = as_list(images)
        if not items:
            raise ImageError("no query images given")
        for i, im in enumerate(items):
            if isinstance(im, (str, os.PathLike)) and not Path(im).is_file():
                raise ImageError(f"query image not found: {describe(im, i)}")
        return self.metric.embed(items)

    def _names(self, images: ImagesLike | Features, feats: Features) -> list[str]:
        items = as_list(images) if not isinstance(images, Features) else list(feats.names)
        return [describe(im, i) if not isinstance(im, str) else im for i, im in enumerate(items)]

    def _check_nonempty(self) -> None:
        if len(self.store) == 0:
            raise StoreError(f"store {self.store.folder} is empty: no image to search")

    # ------------------------------------------------------------------ exact
    def scores_by_shard(self, fq: Features):
        """Yield (ids, scores (Q, n)) for every block of stored images, exact."""
        for _, fg in self.store.iter_shards():
            block = self.block_for(fg)
            for s in range(0, len(fg), block):
                part = fg[s : s + block]
                yield part.names, self.metric.compare_matrix(fq, part.to(self.metric.device)).float().cpu()

    def score_matrix(self, images: ImagesLike | Features) -> tuple[list[str], torch.Tensor]:
        """(ids, exact scores (Q, N)) against every stored image (for small galleries and tests)."""
        self._check_nonempty()
        fq = images if isinstance(images, Features) else self.embed(images)
        ids: list[str] = []
        cols = []
        for part_ids, s in self.scores_by_shard(fq):
            ids += part_ids
            cols.append(s)
        return ids, torch.cat(cols, dim=1)

    def _exhaustive(self, fq: Features, k: int) -> list[list[tuple[str, float]]]:
        higher = self.higher_is_better
        best_s = torch.empty(len(fq), 0)
        best_i: list[list[str]] = [[] for _ in range(len(fq))]
        for ids, s in self.scores_by_shard(fq):
            cand = torch.cat([best_s, s], dim=1)
            vals, idx = _topk(cand, k, higher)
            pool_ids = [row + ids for row in best_i]
            best_i = [[pool_ids[q][j] for j in idx[q].tolist()] for q in range(len(fq))]
            best_s = vals
        return [list(zip(best_i[q], best_s[q].tolist(), strict=False)) for q in range(len(fq))]

    # ------------------------------------------------------------------ prefilter
    def faiss_index(self) -> tuple[Any, list[str]]:
        """A flat inner-product faiss index over the stored pooled vectors (built once per Gallery)."""
        if self._faiss is None:
            faiss = require_faiss()
            ids, pooled = self.store.pooled()
            index = faiss.IndexFlatIP(pooled.shape[1])
            index.add(np.ascontiguousarray(pooled, dtype=np.float32))
            self._faiss, self._faiss_ids = index, ids
        return self._faiss, self._faiss_ids

    def candidates(self, fq: Features, n: int) -> list[list[str]]:
        """The ``n`` stored images whose pooled vectors are nearest each query's (inner product)."""
        index, ids = self.faiss_index()
        q = self.metric.pool(fq).float().cpu().numpy()
        _, nn = index.search(np.ascontiguousarray(q, dtype=np.float32), min(n, len(ids)))
        return [[ids[j] for j in row if j >= 0] for row in nn]

    def rerank(self, fq: Features, candidates: Sequence[Sequence[str]], k: int) -> list[list[tuple[str, float]]]:
        """Exact scores of each query against its own candidates only, one shard at a time; top-k."""
        where = {}
        for shard, (ids, rows) in self.store.by_shard().items():
            for i, r in zip(ids, rows, strict=False):
                where[i] = (shard, r)
        need: dict[str, dict[int, list[str]]] = {}  # shard -> query -> ids
        for q, cands in enumerate(candidates):
            for c in cands:
                need.setdefault(where[c][0], {}).setdefault(q, []).append(c)
        found: list[list[tuple[str, float]]] = [[] for _ in candidates]
        cfg = self.store.feature_config
        dev = self.metric.device
        for shard, per_query in need.items():
            wanted = sorted({c for cs in per_query.values() for c in cs}, key=lambda c: where[c][1])
            pos = {c: j for j, c in enumerate(wanted)}
            feats = Features(self.store.load_shard(shard, [where[c][1] for c in wanted]), cfg, wanted)
            block = self.block_for(feats)
            for q, cs in per_query.items():  # each query against its own candidates: its attention once
                for s in range(0, len(cs), block):
                    part = cs[s : s + block]
                    fb = feats[[pos[c] for c in part]].to(dev)
                    scores = self.metric.compare_matrix(fq[q], fb).float().cpu()[0].tolist()
                    found[q] += list(zip(part, scores, strict=False))
        higher = self.higher_is_better
        return [sorted(f, key=lambda t: -t[1] if higher else t[1])[:k] for f in found]

    # ------------------------------------------------------------------ search
    def search(
        self,
        images: ImagesLike | Features,
        k: int = 10,
        prefilter: int | None = None,
        names: Sequence[str] | None = None,
    ) -> list[list[Hit]]:
        """Top-``k`` stored images for each query (rank 1 = best), exact; ``prefilter=N``: faiss proposes N."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k (top-k) must be a positive integer; got {k!r}")
        if prefilter is not None:
            check_int("prefilter", prefilter, minimum=1)
        self._check_nonempty()
        fq = images if isinstance(images, Features) else self.embed(images)
        qnames = list(names) if names is not None else self._names(images, fq)
        if prefilter is not None:
            if prefilter < k:
                raise ConfigError(f"prefilter ({prefilter}) must be at least top-k ({k})")
            ranked = self.rerank(fq, self.candidates(fq, prefilter), k)
        else:
            ranked = self._exhaustive(fq, k)
        return [
            [Hit(qnames[q], r + 1, i, float(s), self.file_of(i)) for r, (i, s) in enumerate(row)]
            for q, row in enumerate(ranked)
        ]
