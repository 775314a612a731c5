"""The Aligned Attention Score (AAS): pure tensor math on Q/K/V features, no network.

Feature tensors have shape ``(N, *group, T, D)``: N images, any number of group dimensions
(for DiffSim-S: the guidance branches and the heads), T tokens and D channels per head.

``AAS(A, B) = cos(flatten(attn(Q_A, K_B, V_B)), flatten(attn(Q_A, K_A, V_A)))``, one cosine over the
whole flattened tensor, and the symmetric score is ``(AAS(A, B) + AAS(B, A)) / 2`` (paper Eq. 7-10).
All reductions run in float32, whatever dtype the features were computed in. ``dtype`` (float16 /
bfloat16, for GPUs) runs only the attention products in that precision; their outputs are cast back to
float32 before any reduction.

Cosines are clamped to [-1, 1] (float32 rounding may leave the range by a few ulps; more on large
float16 features), and mse is >= 0 by construction. Identity is exact: where B's keys and values (and
key mask) are bitwise those of A, the aligned attention *is* A's own attention, so that pair scores
exactly 1.0 (cosine) or 0.0 (mse) rather than a float32 rounding of it (0.99999988).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

SIMILARITIES = ("cosine", "mse")


@dataclass(frozen=True)
class QKV:
    """Queries, keys and values of one layer for N images, each ``(N, *group, T, D)``."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor

    def float(self) -> QKV:
        return QKV(self.q.float(), self.k.float(), self.v.float())


Post = Callable[[torch.Tensor], torch.Tensor]


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Softmax attention ``softmax(q k^T / sqrt(d)) v``, returned in float32 (float64 for float64 inputs; no dropout).

    ``key_mask`` (N, T_k) bool restricts every query to the keys marked True (per image). ``dtype``:
    the precision of the product itself (default float32).
    """
    mask = None
    if key_mask is not None:
        mask = key_mask.bool().reshape(key_mask.shape[0], *([1] * (q.dim() - 2)), key_mask.shape[-1])
    dt = dtype or torch.promote_types(q.dtype, torch.float32)  # float64 features stay float64 (gradcheck)
    out = F.scaled_dot_product_attention(q.to(dt), k.to(dt), v.to(dt), attn_mask=mask)
    return out.to(torch.promote_types(dt, torch.float32))


def _batch(x: torch.Tensor, n: int) -> torch.Tensor:
    return x if x.shape[0] == n else x.expand(n, *x.shape[1:])


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """(N, *group, T, D) -> (N, T, group*D)."""
    return x.movedim(-2, 1).reshape(x.shape[0], x.shape[-2], -1)


def _reduce(
    aligned: torch.Tensor, own: torch.Tensor, similarity: str, weights: torch.Tensor | None = None
) -> torch.Tensor:
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}; got {similarity!r}")
    if weights is None:
        if similarity == "cosine":
            return F.cosine_similarity(_flat(aligned), _flat(own), dim=1, eps=1e-12).clamp(-1.0, 1.0)
        return (_flat(aligned) - _flat(own)).pow(2).mean(dim=1)
    # token-weighted versions: weights (N, T) >= 0 on the query tokens; all-ones gives the plain score
    x, y = _tokens(aligned), _tokens(own)
    w = _batch(weights.float(), x.shape[0])
    if similarity == "cosine":
        dot = (w * (x * y).sum(-1)).sum(-1)
        nx, ny = (w * x.pow(2).sum(-1)).sum(-1), (w * y.pow(2).sum(-1)).sum(-1)
        return (dot / (nx * ny).sqrt().clamp_min(1e-12)).clamp(-1.0, 1.0)
    return (w * (x - y).pow(2).sum(-1)).sum(-1) / (w.sum(-1) * x.shape[-1]).clamp_min(1e-12)


def _key_mask(weights: torch.Tensor | None, mask_keys: bool) -> torch.Tensor | None:
    """Foreground keys (weight > 0.5); an image without any keeps all its keys."""
    if weights is None or not mask_keys:
        return None
    m = weights > 0.5
    return m | ~m.any(dim=-1, keepdim=True)


def aas(
    a: QKV,
    b: QKV,
    similarity: str = "cosine",
    own_a: torch.Tensor | None = None,
    post: Post | None = None,
    weights_a: torch.Tensor | None = None,
    weights_b: torch.Tensor | None = None,
    mask_keys: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """One-directional AAS(A, B) for paired (or broadcast) batches: shape (N,).

    ``own_a`` may pass a precomputed ``attend(a.q, a.k, a.v)`` (before ``post``). ``post`` maps an
    attention output ``(N, *group, T, D)`` to ``(N, T, C)`` before the reduction (e.g. an output
    projection). ``weights_a`` (N, T) weights A's query tokens (a foreground mask); with
    ``mask_keys`` the attention also only reads foreground keys (of B for the aligned pass, of A for
    A's own pass).
    """
    ka, kb = _key_mask(weights_a, mask_keys), _key_mask(weights_b, mask_keys)
    if own_a is None or ka is not None:
        own_a = attend(a.q, a.k, a.v, ka, dtype)
    return _aas_masked(a, b, own_a, weights_a, ka, kb, similarity, post, dtype)


def score(
    a: QKV,
    b: QKV,
    similarity: str = "cosine",
    post: Post | None = None,
    weights_a: torch.Tensor | None = None,
    weights_b: torch.Tensor | None = None,
    mask_keys: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Symmetric score ``(AAS(A,B) + AAS(B,A)) / 2`` for paired batches (N,) (size-1 batches broadcast)."""
    kw: dict[str, Any] = dict(similarity=similarity, post=post, mask_keys=mask_keys, dtype=dtype)
    return 0.5 * (
        aas(a, b, weights_a=weights_a, weights_b=weights_b, **kw)
        + aas(b, a, weights_a=weights_b, weights_b=weights_a, **kw)
    )


def _row(x: torch.Tensor | None, i: int) -> torch.Tensor | None:
    return None if x is None else x[i : i + 1]


def score_matrix(
    a: QKV,
    b: QKV,
    similarity: str = "cosine",
    post: Post | None = None,
    weights_a: torch.Tensor | None = None,
    weights_b: torch.Tensor | None = None,
    mask_keys: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """All-pairs symmetric scores, shape (N, M); each image's own attention is computed once."""
    own_a = attend(a.q, a.k, a.v, _key_mask(weights_a, mask_keys), dtype)
    own_b = attend(b.q, b.k, b.v, _key_mask(weights_b, mask_keys), dtype)
    kw: dict[str, Any] = dict(similarity=similarity, post=post, dtype=dtype)
    ka, kb = _key_mask(weights_a, mask_keys), _key_mask(weights_b, mask_keys)
    rows = []
    for i in range(a.q.shape[0]):
        ai = QKV(a.q[i : i + 1], a.k[i : i + 1], a.v[i : i + 1])
        # A_i queries on every B_j; every B_j queries on A_i (key masks passed explicitly below)
        ab = _aas_masked(ai, b, own_a[i : i + 1], _row(weights_a, i), _row(ka, i), kb, **kw)
        ba = _aas_masked(b, ai, own_b, weights_b, kb, _row(ka, i), **kw)
        rows.append(0.5 * (ab + ba))
    return torch.stack(rows)


def _rows_equal(x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) bool: row i of x equals row i of y bit for bit (size-1 batches broadcast)."""
    if x.shape[1:] != y.shape[1:]:
        return torch.zeros(n, dtype=torch.bool, device=x.device)
    return (_batch(x, n) == _batch(y, n)).reshape(n, -1).all(dim=1)


def _same_keys(
    a: QKV, b: QKV, key_mask_a: torch.Tensor | None, key_mask_b: torch.Tensor | None, n: int
) -> torch.Tensor:
    """(n,) bool: B's keys, values and key mask are A's, so attend(Q_A, K_B, V_B) is A's own attention."""
    same = _rows_equal(a.k, b.k, n) & _rows_equal(a.v, b.v, n)
    if key_mask_a is None and key_mask_b is None:
        return same
    ma = key_mask_a if key_mask_a is not None else torch.ones_like(key_mask_b)  # type: ignore[arg-type]
    mb = key_mask_b if key_mask_b is not None else torch.ones_like(key_mask_a)  # type: ignore[arg-type]
    return same & _rows_equal(ma.bool(), mb.bool(), n)


def _aas_masked(
    a: QKV,
    b: QKV,
    own_a: torch.Tensor,
    weights_a: torch.Tensor | None,
    key_mask_a: torch.Tensor | None,
    key_mask_b: torch.Tensor | None,
    similarity: str,
    post: Post | None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """AAS(A, B) given A's own attention output and the key masks of A (for ``own_a``) and B (None: every key)."""
    n = max(a.q.shape[0], b.k.shape[0])
    km = None if key_mask_b is None else _batch(key_mask_b, n)
    aligned = attend(_batch(a.q, n), _batch(b.k, n), _batch(b.v, n), km, dtype)
    own = _batch(own_a, n)
    if post is not None:
        aligned, own = post(aligned), post(own)
    out = _reduce(aligned, own, similarity, weights_a)
    same = _same_keys(a, b, key_mask_a, key_mask_b, n)
    if bool(same.any()):  # aligned == own by construction: the exact value, not its float32 rounding
        out = torch.where(same, torch.full_like(out, 1.0 if similarity == "cosine" else 0.0), out)
    return out


def token_map(a: QKV, b: QKV) -> torch.Tensor:
    """Per-query-token cosine of AAS(A, B): shape (N, T), one value per token of A.

    The cosine is taken over every group dimension and channel of that token, so the map's
    norm-weighted mean is the global AAS.
    """
    n = max(a.q.shape[0], b.k.shape[0])
    aligned = attend(_batch(a.q, n), _batch(b.k, n), _batch(b.v, n))
    own = attend(a.q, a.k, a.v).expand_as(aligned)
    return F.cosine_similarity(_tokens(aligned), _tokens(own), dim=-1, eps=1e-12).clamp(-1.0, 1.0)
