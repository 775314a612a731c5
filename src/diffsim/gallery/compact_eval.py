"""How much of the exact ranking a compact mode keeps, measured on a sample of a store's own features.

:func:`evaluate_compact` reads N images of an uncompressed (or fp16) store, encodes and decodes their
features in each compact mode in memory (a ``pca`` mode's projection is fitted on the same N images, as a
build fits it on its first images), and ranks the sample with every sampled image (or ``queries`` of them)
as a query: its exact features against the others' exact features (the reference) and against their
decoded compact features (what a compact store's re-ranking computes). Reported per mode: bytes per image
of the stored token features, the mean overlap of the two top-k lists (the query itself left out), and
the mean Spearman rank correlation of the two rankings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..bounds import check_int
from ..errors import ConfigError, StoreError
from ..features import Features
from .compact import Projection, parse_mode
from .store import GalleryStore, decode_tensors, encode_tensors

DEFAULT_MODES = ("fp16", "int8", "pca64-int8", "pca64-pool2-int8", "pca16-pool2-int8")
#: the store modes whose features are exact enough to be the reference
REFERENCE_MODES = ("none", "fp16")


@dataclass
class CompactResult:
    """One mode's row: stored token-feature bytes per image, and agreement with the exact ranking."""

    mode: str
    bytes_per_image: float
    ratio: float  # float32 bytes / compact bytes
    topk: float  # mean |exact top-k ∩ compact top-k| / k
    spearman: float  # mean Spearman correlation of the rankings
    max_abs_diff: float  # largest |exact score - compact score|


def check_reference(store: GalleryStore, n: int) -> None:
    """Refuse a store without exact features, or a sample of fewer than 2 or more than the stored images."""
    if store.compact not in REFERENCE_MODES:
        raise StoreError(
            f"store {store.folder} is compact={store.compact}: eval-compact needs exact features as the "
            "reference (a store built with --compact none or fp16)"
        )
    check_int("--sample", n, 2)
    if n > len(store):
        raise ConfigError(f"--sample {n} is larger than the store ({len(store)} images)")


def sample_ids(store: GalleryStore, n: int) -> list[str]:
    """``n`` stored ids spread evenly over the table (first, last and between)."""
    ids = store.ids()
    return [ids[int(i)] for i in np.linspace(0, len(ids) - 1, n).round()]


def compact_round_trip(feats: Features, mode: str, projection: Projection | None = None) -> tuple[Features, float]:
    """(``feats`` encoded in ``mode`` and decoded, stored bytes per image of the encoded tensors); a pca mode
    uses ``projection`` (or one fitted on ``feats``)."""
    m = parse_mode(mode)
    if m.projected and projection is None:
        projection = Projection.fit(m, [feats])
    stored = encode_tensors(feats, mode, projection)
    nbytes = sum(t.numel() * t.element_size() for t in stored.values()) / len(feats)
    decoded = decode_tensors(stored, mode, projection)
    return Features({k: v.float() for k, v in decoded.items()}, feats.config, list(feats.names)), nbytes


def _ranks(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def agreement(
    exact: torch.Tensor, approx: torch.Tensor, k: int, higher: bool, selves: list[int] | None = None
) -> tuple[float, float]:
    """(mean top-k overlap, mean Spearman) of two (Q, N) score matrices; row i leaves out column ``selves[i]``
    (the query itself; default: the diagonal)."""
    n = exact.shape[1]
    sign = 1.0 if higher else -1.0
    overlaps, rhos = [], []
    for i in range(exact.shape[0]):
        me = i if selves is None else selves[i]
        others = [j for j in range(n) if j != me]
        e = sign * exact[i, others].double().numpy()
        a = sign * approx[i, others].double().numpy()
        kk = min(k, len(others))
        top_e = set(np.argsort(-e, kind="stable")[:kk].tolist())
        top_a = set(np.argsort(-a, kind="stable")[:kk].tolist())
        overlaps.append(len(top_e & top_a) / kk)
        re, ra = _ranks(e), _ranks(a)
        rhos.append(float(np.corrcoef(re, ra)[0, 1]) if len(others) > 1 else 1.0)
    return float(np.mean(overlaps)), float(np.mean(rhos))


def evaluate_compact(
    store: GalleryStore,
    metric: Any,
    n: int,
    modes: tuple[str, ...] = DEFAULT_MODES,
    k: int = 10,
    queries: int | None = None,
) -> list[CompactResult]:
    """One :class:`CompactResult` per mode on ``n`` images of ``store`` (see the module docstring);
    ``queries``: only that many of them (spread over the sample) are queries, to bound the cost
    (``queries x n`` comparisons per mode)."""
    check_reference(store, n)
    for mode in modes:
        parse_mode(mode)
    check_int("--top-k", k, 1)
    q = n if queries is None else check_int("--queries", queries, 1, n)
    feats = store.load(sample_ids(store, n))
    feats = Features({key: v.float() for key, v in feats.tensors.items()}, feats.config, feats.names)
    selves = [int(i) for i in np.linspace(0, n - 1, q).round()]
    full = feats.nbytes / len(feats)
    dev = metric.device
    fq = feats[selves].to(dev)
    exact = metric.compare_matrix(fq, feats.to(dev)).float().cpu()
    higher = bool(metric.higher_is_better)
    out = []
    fitted: dict[int, Projection] = {}  # per pooling: one fit with the most components, truncated per mode
    for mode in modes:
        m = parse_mode(mode)
        projection = None
        if m.projected and m.dims is not None:
            most = max(d for d in (parse_mode(x).dims for x in modes if parse_mode(x).pool == m.pool) if d)
            if m.pool not in fitted:
                fitted[m.pool] = Projection.fit(f"pca{most}{f'-pool{m.pool}' if m.pool > 1 else ''}-int8", [feats])
            projection = fitted[m.pool].truncate(m)
        decoded, nbytes = compact_round_trip(feats, mode, projection)
        approx = metric.compare_matrix(fq, decoded.to(dev)).float().cpu()
        top, rho = agreement(exact, approx, k, higher, selves)
        diff = float((approx - exact).abs().max())
        out.append(CompactResult(mode, nbytes, full / nbytes, top, rho, diff))
    return out


def table(results: list[CompactResult], n: int, k: int, queries: int | None = None) -> str:
    """A Markdown table of the results, after a row for the exact float32 features."""
    lines = [
        f"| mode | token bytes/image | x smaller than float32 | top-{k} agreement | Spearman | max abs score diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    if results:
        full = results[0].ratio * results[0].bytes_per_image
        lines.append(f"| none (float32, exact) | {full:,.0f} | 1.0 | 1.000 | 1.000 | 0 |")
    for r in results:
        lines.append(
            f"| {r.mode} | {r.bytes_per_image:,.0f} | {r.ratio:.1f} | {r.topk:.3f} | {r.spearman:.3f} "
            f"| {r.max_abs_diff:.2e} |"
        )
    who = "each" if queries is None or queries >= n else f"{queries} of them"
    lines.append(f"\n{n} images sampled, {who} a query against the other {n - 1}.")
    return "\n".join(lines)
