"""Plain similarity functions on flattened per-image features (the functional core of several metrics).

Every cosine here is clamped to [-1, 1] (float32 rounding of ``x . y / (|x| |y|)`` may leave it by a few
ulps), and a pair whose two rows are bitwise equal scores exactly 1.0: the same features give exactly the
documented identity value, not its float32 rounding (0.99999988 or 1.0000001).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: a pair is checked for bitwise-equal rows only where its score is this close to identity
_NEAR = 1e-4


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def same_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) bool: row i of ``a`` equals row i of ``b`` bit for bit (a batch of one broadcasts)."""
    x, y = _flat(a), _flat(b)
    n = max(x.shape[0], y.shape[0])
    if x.shape[1:] != y.shape[1:]:
        return torch.zeros(n, dtype=torch.bool, device=x.device)
    return (x.expand(n, -1) == y.expand(n, -1)).all(dim=1)


def same_pairs(a: torch.Tensor, b: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(N, M) bool: row i of ``a`` equals row j of ``b`` bit for bit, checked only where ``candidates``."""
    x, y = _flat(a), _flat(b)
    out = torch.zeros_like(candidates, dtype=torch.bool)
    if x.shape[1:] != y.shape[1:]:
        return out
    i, j = candidates.nonzero(as_tuple=True)
    if i.numel():
        out[i, j] = (x[i] == y[j]).all(dim=1)
    return out


def pin_identity(scores: torch.Tensor, same: torch.Tensor, value: float) -> torch.Tensor:
    """``scores`` with ``value`` where ``same`` (bitwise-equal features: the exact identity score)."""
    if not bool(same.any()):
        return scores
    return torch.where(same, torch.full_like(scores, value), scores)


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Paired cosine of flattened rows (a batch of one broadcasts), float32, (N,), in [-1, 1]."""
    x, y = _flat(a).float(), _flat(b).float()
    out = F.cosine_similarity(x, y, dim=1, eps=1e-12).clamp(-1.0, 1.0)
    return pin_identity(out, same_rows(a, b), 1.0)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All-pairs cosine of flattened rows, (N, M) float32, in [-1, 1]."""
    x = F.normalize(_flat(a).float(), dim=1, eps=1e-12)
    y = F.normalize(_flat(b).float(), dim=1, eps=1e-12)
    out = (x @ y.T).clamp(-1.0, 1.0)
    return pin_identity(out, same_pairs(a, b, out > 1.0 - _NEAR), 1.0)


def unit_dot_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Paired dot product of rows already unit-normalised (a cosine): clamped, exactly 1.0 for equal rows."""
    out = (_flat(a).float() * _flat(b).float()).sum(dim=1).clamp(-1.0, 1.0)
    return pin_identity(out, same_rows(a, b), 1.0)


def unit_dot_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All-pairs dot products of unit-normalised rows (N, M): clamped, exactly 1.0 for equal rows."""
    out = (_flat(a).float() @ _flat(b).float().T).clamp(-1.0, 1.0)
    return pin_identity(out, same_pairs(a, b, out > 1.0 - _NEAR), 1.0)
