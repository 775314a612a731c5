"""The Aligned Attention Score (AAS): pure tensor math on Q/K/V features, no network.

Feature tensors have shape ``(N, *group, T, D)``: N images, any number of group dimensions
(for DiffSim-S: the guidance branches and the heads), T tokens and D channels per head.

``AAS(A, B) = cos(flatten(attn(Q_A, K_B, V_B)), flatten(attn(Q_A, K_A, V_A)))``, one cosine over the
whole flattened tensor, and the symmetric score is ``(AAS(A, B) + AAS(B, A)) / 2`` (paper Eq. 7-10).
All reductions run in float32, whatever dtype the features were computed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

SIMILARITIES = ("cosine", "mse")


@dataclass(frozen=True)
class QKV:
    """Queries, keys and values of one layer for N images, each ``(N, *group, T, D)``."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor

    def float(self) -> "QKV":
        return QKV(self.q.float(), self.k.float(), self.v.float())


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention ``softmax(q k^T / sqrt(d)) v`` in float32 (no mask, no dropout)."""
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float())


def _batch(x: torch.Tensor, n: int) -> torch.Tensor:
    return x if x.shape[0] == n else x.expand(n, *x.shape[1:])


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _reduce(aligned: torch.Tensor, own: torch.Tensor, similarity: str) -> torch.Tensor:
    if similarity == "cosine":
        return F.cosine_similarity(_flat(aligned), _flat(own), dim=1, eps=1e-12)
    if similarity == "mse":
        return (_flat(aligned) - _flat(own)).pow(2).mean(dim=1)
    raise ValueError(f"similarity must be one of {SIMILARITIES}; got {similarity!r}")


def aas(a: QKV, b: QKV, similarity: str = "cosine", own_a: torch.Tensor | None = None) -> torch.Tensor:
    """One-directional AAS(A, B) for paired (or broadcast) batches: shape (N,).

    ``own_a`` may pass a precomputed ``attend(a.q, a.k, a.v)``.
    """
    if own_a is None:
        own_a = attend(a.q, a.k, a.v)
    n = max(a.q.shape[0], b.k.shape[0])
    aligned = attend(_batch(a.q, n), _batch(b.k, n), _batch(b.v, n))
    own_a = own_a.expand_as(aligned)
    return _reduce(aligned, own_a, similarity)


def score(a: QKV, b: QKV, similarity: str = "cosine") -> torch.Tensor:
    """Symmetric score ``(AAS(A,B) + AAS(B,A)) / 2`` for paired batches (N,) (size-1 batches broadcast)."""
    return 0.5 * (aas(a, b, similarity) + aas(b, a, similarity))


def score_matrix(a: QKV, b: QKV, similarity: str = "cosine") -> torch.Tensor:
    """All-pairs symmetric scores, shape (N, M); each image's own attention is computed once."""
    own_a = attend(a.q, a.k, a.v)
    own_b = attend(b.q, b.k, b.v)
    rows = []
    for i in range(a.q.shape[0]):
        ai = QKV(a.q[i : i + 1], a.k[i : i + 1], a.v[i : i + 1])
        ab = aas(ai, b, similarity, own_a=own_a[i : i + 1])  # A_i queries on every B_j
        ba = aas(b, ai, similarity, own_a=own_b)  # every B_j queries on A_i
        rows.append(0.5 * (ab + ba))
    return torch.stack(rows)


def token_map(a: QKV, b: QKV) -> torch.Tensor:
    """Per-query-token cosine of AAS(A, B): shape (N, T), one value per token of A.

    The cosine is taken over every group dimension and channel of that token, so the map's
    norm-weighted mean is the global AAS.
    """
    n = max(a.q.shape[0], b.k.shape[0])
    aligned = attend(_batch(a.q, n), _batch(b.k, n), _batch(b.v, n))
    own = attend(a.q, a.k, a.v).expand_as(aligned)
    # (N, *group, T, D) -> (N, T, group*D)
    n, t = aligned.shape[0], aligned.shape[-2]
    al = aligned.movedim(-2, 1).reshape(n, t, -1)
    ow = own.movedim(-2, 1).reshape(n, t, -1)
    return F.cosine_similarity(al, ow, dim=-1, eps=1e-12)
