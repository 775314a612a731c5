"""The common comparison of embedding metrics: the cosine of one vector (or token set) per image."""

from __future__ import annotations

from typing import Any

import torch

from ..features import Features
from ..similarity import cosine_matrix, cosine_rows


class VectorCosine:
    """Mixin placed before :class:`~diffsim.metrics.base.FeatureMetric` in the bases: ``compare`` and
    ``compare_matrix`` are the cosine of :meth:`vector` of each side (after ``check_pair``)."""

    def vector(self, feats: Features) -> torch.Tensor:
        """The features compared by cosine (per image: a vector, or tokens as :func:`cosine_rows` takes)."""
        raise NotImplementedError

    def compare(self: Any, a: Features, b: Features) -> torch.Tensor:
        self.check_pair(a, b)
        return cosine_rows(self.vector(a), self.vector(b))

    def compare_matrix(self: Any, a: Features, b: Features) -> torch.Tensor:
        self.check_pair(a, b)
        return cosine_matrix(self.vector(a), self.vector(b))
