"""Retrieval over a gallery store: exact scores streamed over shards, or a faiss prefilter + exact re-rank.

Exhaustive search compares the queries with every stored image, one shard (and at most ``block``
images) at a time, keeping a running top-k, so memory stays bounded by the shard size. With
``prefilter=N`` (or ``"auto"``: N grown until a measured recall target holds), the store's persisted
ANN index over the pooled vectors (:mod:`diffsim.gallery.ann`) proposes N candidates per query and only
those are scored exactly, reading only their rows from the shards.
Top-k follows the metric's polarity (``higher_is_better``).
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

from ..errors import ConfigError, ImageError, StoreError
from ..features import Features
from ..images import ImagesLike, as_list, describe
from .ann import AnnIndex, open_index, require_faiss
from .store import GalleryStore

__all__ = ["Gallery", "Hit", "PrefilterReport", "metric_for", "require_faiss"]

logger = logging.getLogger(__name__)


@dataclass
class PrefilterReport:
    """How a prefiltered search went: candidates per query and the recall@k measured on sample queries."""

    candidates: int
    k: int
    estimated_recall: float | None  # mean |exact top-k in the candidates| / k over the sample; None: not measured
    sample: int  # sample queries scored exactly
    target_recall: float | None = None
    ann: str = ""  # the ANN index kind

    def line(self) -> str:
        est = (
            f"estimated recall@{self.k} {self.estimated_recall:.3f} on {self.sample} sample quer"
            f"{'y' if self.sample == 1 else 'ies'}"
            if self.estimated_recall is not None
            else "recall not measured (--recall-sample 0)"
        )
        target = f" (target {self.target_recall:g})" if self.target_recall is not None else ""
        return f"prefilter: {self.candidates} candidates per query from a {self.ann} index; {est}{target}"


@dataclass(frozen=True)
class Hit:
    """One retrieved image: ``rank`` 1 is the best; ``path`` is the id as indexed, ``file`` the file read."""

    query: str
    rank: int
    path: str
    score: float
    file: str


def metric_for(store: GalleryStore, **runtime: Any) -> Any:
    """The store's metric, rebuilt from its settings (``runtime``: e.g. ``device=``, ``batch_size=``)."""
    from ..registry import create_metric
    from .store import local_model

    path = local_model(store.feature_config)
    if path is not None and not Path(path).exists():
        raise StoreError(
            f"store {store.folder} was built with the local model {path}, which is not there any more; "
            "put the model back at that path, or build the store again with the model where it is now"
        )
    runtime.setdefault("cache_bytes", 0)  # stored features are read from the store: no feature LRU to fill
    metric = create_metric(store.metric_name, **{**store.metric_settings, **runtime})
    store.check_metric(metric)
    return metric


#: feature bytes of the stored images compared in one call (``block=None``)
BLOCK_BYTES = 256 * 1024**2
#: queries re-ranked together: one read of each candidate shard per block
QUERY_BLOCK = 64


def _topk(scores: torch.Tensor, k: int, higher: bool) -> tuple[torch.Tensor, torch.Tensor]:
    k = min(k, scores.shape[-1])
    return torch.topk(scores, k, dim=-1, largest=higher, sorted=True)


class Gallery:
    """Search a gallery store with its metric."""

    def __init__(self, store: GalleryStore, metric: Any, block: int | None = None) -> None:
        store.check_metric(metric)
        self.store, self.metric, self.block = store, metric, block
        self._paths: dict[str, str] | None = None
        self._ann: AnnIndex | None = None
        self.last_prefilter: PrefilterReport | None = None

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
    def ann_index(self) -> AnnIndex:
        """The store's persisted ANN index over the pooled vectors (loaded, updated or built once per Gallery)."""
        if self._ann is None:
            self._ann = open_index(self.store)
        return self._ann

    def faiss_index(self) -> tuple[Any, list[str]]:
        """(faiss index, ids of its vectors): :meth:`ann_index` as a raw faiss index."""
        ann = self.ann_index()
        return ann.index, ann.ids

    def query_vectors(self, fq: Features) -> np.ndarray:
        """The queries' pooled vectors, refused when not finite (a degenerate layer)."""
        q = self.metric.pool(fq).float().cpu().numpy()
        if not np.isfinite(q).all():
            raise ConfigError(
                f"the {self.metric.name} pooled vector of a query is not finite; search without a prefilter"
            )
        return np.ascontiguousarray(q, dtype=np.float32)

    def candidates(self, fq: Features, n: int) -> list[list[str]]:
        """The ``n`` stored images whose pooled vectors are nearest each query's (inner product)."""
        return self.ann_index().search(self.query_vectors(fq), n)

    def _choose(
        self, fq: Features, k: int, prefilter: int | str, target: float, sample: int
    ) -> tuple[int, dict[int, list[tuple[str, float]]]]:
        """Candidates per query (fixed, or grown until the sample's recall@k reaches ``target``) and the
        exact top-k of the sample queries; records :attr:`last_prefilter`."""
        total = len(self.store)
        picks = sorted({int(i) for i in np.linspace(0, len(fq) - 1, min(sample, len(fq))).round()}) if sample else []
        exact = dict(zip(picks, self._exhaustive(fq[picks], k), strict=False)) if picks else {}
        auto = prefilter == "auto"
        if auto and not picks:
            raise ConfigError("--prefilter auto measures recall on sample queries: --recall-sample must be at least 1")
        n = min(total, max(2 * k, 16)) if auto else int(prefilter)
        recall = None
        while True:
            if picks:
                found = self.candidates(fq[picks], n)
                recall = float(
                    np.mean(
                        [
                            len({i for i, _ in exact[q]} & set(c)) / len(exact[q])
                            for q, c in zip(picks, found, strict=False)
                        ]
                    )
                )
            if not auto or recall is None or recall >= target or n >= total:
                break
            n = min(total, 2 * n)
        self.last_prefilter = PrefilterReport(
            n, k, recall, len(picks), target if auto else None, self.ann_index().info.kind
        )
        return n, exact

    def rerank(self, fq: Features, candidates: Sequence[Sequence[str]], k: int) -> list[list[tuple[str, float]]]:
        """Exact scores of each query against its own candidates only; top-k.

        Queries go in blocks of :data:`QUERY_BLOCK`: each block reads each shard its candidates are in
        once (the rows of the whole block), so many queries share a read, and memory holds one block's
        candidates."""
        where = self.store.locate()
        higher = self.higher_is_better
        out: list[list[tuple[str, float]]] = []
        for b in range(0, len(candidates), QUERY_BLOCK):
            found = self._rerank_block(fq[b : b + QUERY_BLOCK], candidates[b : b + QUERY_BLOCK], where)
            out += [sorted(f, key=lambda t: -t[1] if higher else t[1])[:k] for f in found]
        return out

    def _rerank_block(
        self, fq: Features, candidates: Sequence[Sequence[str]], where: dict[str, tuple[str, int]]
    ) -> list[list[tuple[str, float]]]:
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
        return found

    # ------------------------------------------------------------------ search
    def search(
        self,
        images: ImagesLike | Features,
        k: int = 10,
        prefilter: int | str | None = None,
        names: Sequence[str] | None = None,
        target_recall: float = 0.95,
        recall_sample: int = 8,
    ) -> list[list[Hit]]:
        """Top-``k`` stored images for each query (rank 1 = best), exact without ``prefilter``.

        ``prefilter=N``: the ANN index proposes N candidates per query, scored exactly; ``"auto"``: N
        doubles (from ``max(2k, 16)``) until recall@k on ``recall_sample`` queries, against their exhaustive
        exact top-k, reaches ``target_recall``. Either way :attr:`last_prefilter` holds the estimated recall
        (the sample queries get their exact results).
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k (top-k) must be a positive integer; got {k!r}")
        if not (isinstance(recall_sample, int) and recall_sample >= 0):
            raise ConfigError(f"recall_sample must be a non-negative integer; got {recall_sample!r}")
        if not (0.0 < target_recall <= 1.0):
            raise ConfigError(f"target_recall must be in (0, 1]; got {target_recall!r}")
        self._check_nonempty()
        fq = images if isinstance(images, Features) else self.embed(images)
        qnames = list(names) if names is not None else self._names(images, fq)
        self.last_prefilter = None
        if prefilter is not None:
            if prefilter != "auto" and (not isinstance(prefilter, int) or prefilter < k):
                raise ConfigError(f"prefilter must be 'auto' or an integer at least top-k ({k}); got {prefilter!r}")
            n, exact = self._choose(fq, k, prefilter, target_recall, recall_sample)
            rest = [q for q in range(len(fq)) if q not in exact]
            ranked_rest = self.rerank(fq[rest], self.candidates(fq[rest], n), k) if rest else []
            by_q = {**exact, **dict(zip(rest, ranked_rest, strict=False))}
            ranked = [by_q[q] for q in range(len(fq))]
        else:
            ranked = self._exhaustive(fq, k)
        return [
            [Hit(qnames[q], r + 1, i, float(s), self.file_of(i)) for r, (i, s) in enumerate(row)]
            for q, row in enumerate(ranked)
        ]
