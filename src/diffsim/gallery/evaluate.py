"""Retrieval quality of a labelled gallery (one folder per class): leave-one-out recall@k and mAP.

Every stored image is a query against all the others (exact scores, streamed shard by shard; the
N x N score matrix is held, so this is meant for evaluation galleries of thousands of images).
``recall@k`` is the fraction of queries with at least one image of their class among the top k (the
usual Recall@k of image retrieval); ``mAP`` is the mean average precision over the whole ranking.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import StoreError
from .search import Gallery


def label_of(id_: str) -> str | None:
    """The class of a stored image: the first folder of its id (None for a top-level or absolute id)."""
    head, sep, _ = id_.partition("/")
    return head if sep and not id_.startswith("/") else None


def all_scores(gallery: Gallery) -> tuple[list[str], torch.Tensor]:
    """(ids, exact scores (N, N)) of every stored image against every other, in table order."""
    ids: list[str] = []
    rows = []
    for _, fq in gallery.store.iter_shards():
        fq = fq.to(gallery.metric.device)
        block = gallery.block_for(fq)
        for s in range(0, len(fq), block):
            part = fq[s : s + block]
            cols_ids, cols = [], []
            for b_ids, sc in gallery.scores_by_shard(part):
                cols_ids += b_ids
                cols.append(sc)
            ids += part.names
            rows.append(torch.cat(cols, dim=1))
    if cols_ids != ids:
        raise StoreError("store changed during evaluation")
    return ids, torch.cat(rows)


def evaluate(gallery: Gallery, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """{"queries", "classes", "recall@K" for K in ks, "mAP"} of leave-one-out retrieval."""
    from .._optional import require

    retrieval = require("torchmetrics.functional.retrieval", "torchmetrics", "retrieval evaluation (--eval)")
    retrieval_average_precision, retrieval_hit_rate = (
        retrieval.retrieval_average_precision,
        retrieval.retrieval_hit_rate,
    )

    ids, scores = all_scores(gallery)
    found = [label_of(i) for i in ids]
    labels = [lab for lab in found if lab is not None]
    if len(labels) < len(found):
        raise StoreError(
            "evaluation needs one folder per class: every image id must start with its class "
            "folder (build the store from the folder holding the class folders)"
        )
    preds = scores if gallery.higher_is_better else -scores
    lab = {v: j for j, v in enumerate(sorted(set(labels)))}
    y = torch.tensor([lab[v] for v in labels])
    n = len(ids)
    recall: dict[int, list[float]] = {k: [] for k in ks}
    aps = []
    for q in range(n):
        keep = torch.arange(n) != q
        target = y[keep] == y[q]
        if not target.any():
            continue
        p = preds[q, keep].double()
        aps.append(float(retrieval_average_precision(p, target)))
        for k in ks:
            recall[k].append(float(retrieval_hit_rate(p, target, top_k=k)))
    out = {"queries": float(len(aps)), "classes": float(len(lab))}
    for k in ks:
        out[f"recall@{k}"] = sum(recall[k]) / max(1, len(recall[k]))
    out["mAP"] = sum(aps) / max(1, len(aps))
    return out
