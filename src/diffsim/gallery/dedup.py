"""Near-duplicate groups in a gallery store: faiss neighbours, exact check, connected components.

Each stored image's ``neighbours`` nearest pooled vectors (the store's ANN index) are candidate pairs;
each pair is scored exactly with the store's metric, and the pairs whose score passes the threshold
(``>=`` for similarities, ``<=`` for distances) link images into groups (connected components).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bounds import check_float, check_int
from ..features import Features
from .search import BLOCK_BYTES, Gallery


@dataclass
class Groups:
    """Groups of two or more near-duplicates (largest first) and the passing pairs (a, b, score)."""

    groups: list[list[str]] = field(default_factory=list)
    pairs: list[tuple[str, str, float]] = field(default_factory=list)
    candidates: int = 0  # pairs scored exactly


def candidate_pairs(gallery: Gallery, neighbours: int) -> set[tuple[str, str]]:
    """Unordered pairs (a < b) of images among each other's ``neighbours`` nearest pooled vectors.

    The store's persisted ANN index answers, a chunk of stored vectors at a time: never all pairs.
    """
    from .ann import CHUNK

    ann = gallery.ann_index()
    ids = ann.ids
    pairs = set()
    for start in range(0, len(ids), CHUNK):
        vecs = gallery.store.pool_rows(start, min(len(ids), start + CHUNK))
        for i, row in enumerate(ann.search_rows(vecs, neighbours + 1), start):
            for j in row:
                if j >= 0 and j != i:
                    a, b = ids[i], ids[int(j)]
                    pairs.add((a, b) if a < b else (b, a))
    return pairs


def pair_bytes(one: Features) -> int:
    """Memory one pair takes in a compare call: both sides' features and the attention maps of both directions."""
    attn = 0
    for t in one.tensors.values():
        if t.dim() >= 3:
            attn = max(attn, int(np.prod(t.shape[1:-2])) * t.shape[-2] ** 2 * 4 * 2)
    return max(1, 2 * one.nbytes + attn)


def exact_scores(gallery: Gallery, pairs: set[tuple[str, str]]) -> list[tuple[str, str, float]]:
    """Exact metric scores of the pairs, loading one shard of first members at a time."""
    where = gallery.store.locate()
    by_shard: dict[str, list[tuple[str, str]]] = {}
    for a, b in sorted(pairs):
        by_shard.setdefault(where[a][0], []).append((a, b))
    out = []
    dev = gallery.metric.device
    chunk = gallery.block
    for ps in by_shard.values():
        if chunk is None:  # pairs per compare call: about BLOCK_BYTES of features and attention maps
            chunk = max(1, BLOCK_BYTES // pair_bytes(gallery.store.load([ps[0][0]])))
        for s in range(0, len(ps), chunk):
            part = ps[s : s + chunk]
            fa = gallery.store.load([a for a, _ in part]).to(dev)
            fb = gallery.store.load([b for _, b in part]).to(dev)
            scores = gallery.metric.compare(fa, fb).float().cpu()
            out += [(a, b, float(v)) for (a, b), v in zip(part, scores.tolist(), strict=False)]
    return out


def find_groups(gallery: Gallery, threshold: float, neighbours: int = 10) -> Groups:
    """Near-duplicate groups: candidates from faiss, kept when their exact score passes ``threshold``."""
    check_int("neighbours", neighbours, minimum=1)
    check_float("threshold", threshold)
    gallery._check_nonempty()
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = candidate_pairs(gallery, neighbours)
    scored = exact_scores(gallery, pairs)
    higher = gallery.higher_is_better
    passing = [p for p in scored if (p[2] >= threshold if higher else p[2] <= threshold)]
    ids = gallery.store.ids()
    pos = {i: n for n, i in enumerate(ids)}
    rows = [pos[a] for a, _, _ in passing]
    cols = [pos[b] for _, b, _ in passing]
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ids), len(ids)))
    _, comp = connected_components(graph, directed=False)
    members: dict[int, list[str]] = {}
    for i, c in zip(ids, comp.tolist(), strict=False):
        members.setdefault(c, []).append(i)
    groups = sorted((m for m in members.values() if len(m) > 1), key=lambda m: (-len(m), m[0]))
    passing.sort(key=lambda p: -p[2] if higher else p[2])
    return Groups(groups, passing, len(scored))


def write_groups(result: Groups, gallery: Gallery, out: str | os.PathLike, pictures: bool = True) -> Path:
    """``groups.csv`` (group, id, path), ``groups.json`` (groups with their passing pairs) and one PNG per group."""
    from .grid import group_grid

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "groups.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["group", "id", "path"])
        for g, members in enumerate(result.groups, 1):
            for m in members:
                w.writerow([g, m, gallery.file_of(m)])
    group_of = {m: g for g, ms in enumerate(result.groups, 1) for m in ms}
    doc = [
        {
            "group": g,
            "members": ms,
            "pairs": [{"a": a, "b": b, "score": s} for a, b, s in result.pairs if group_of.get(a) == g],
        }
        for g, ms in enumerate(result.groups, 1)
    ]
    (folder / "groups.json").write_text(json.dumps(doc, indent=1))
    if pictures:
        for g, ms in enumerate(result.groups, 1):
            group_grid([(gallery.file_of(m), m) for m in ms], folder / f"group-{g:04d}.png", f"group {g}")
    return folder
