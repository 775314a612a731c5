"""Plain similarity functions on flattened per-image features (the functional core of several metrics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Paired cosine of flattened rows (a batch of one broadcasts), float32, (N,)."""
    x, y = a.reshape(a.shape[0], -1).float(), b.reshape(b.shape[0], -1).float()
    return F.cosine_similarity(x, y, dim=1, eps=1e-12)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All-pairs cosine of flattened rows, (N, M) float32."""
    x = F.normalize(a.reshape(a.shape[0], -1).float(), dim=1, eps=1e-12)
    y = F.normalize(b.reshape(b.shape[0], -1).float(), dim=1, eps=1e-12)
    return x @ y.T
