"""The interface every metric implements: ``embed`` (per-image features, cacheable) and ``compare`` (cheap).

``score`` and ``matrix`` are built on those two, so benchmarks, sweeps and retrieval never run a
network twice on the same image: embed every distinct image once, then compare features.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from ..errors import ImageError
from ..features import Features
from ..images import ImagesLike, as_list, is_single


class Metric(ABC):
    """A similarity (``higher_is_better=True``) or distance (``False``) between images."""

    name: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = True

    @abstractmethod
    def embed(self, images: ImagesLike, **kwargs: Any) -> Features:
        """Per-image features for a batch of images (paths, PIL, arrays or tensors in [0, 1])."""

    @abstractmethod
    def compare(self, a: Features, b: Features) -> torch.Tensor:
        """Scores of paired features, shape (N,); a batch of one broadcasts against the other."""

    def compare_matrix(self, a: Features, b: Features) -> torch.Tensor:
        """All-pairs scores (len(a), len(b)). Subclasses may vectorise this."""
        return torch.stack([self.compare(a[i], b) for i in range(len(a))])

    @property
    def config(self) -> dict[str, Any]:
        """Everything that determines the scores (shown in results and used in cache keys)."""
        return {"metric": self.name, "higher_is_better": self.higher_is_better}

    def _embed_both(self, a: ImagesLike, b: ImagesLike, **kwargs: Any) -> tuple[Features, Features]:
        la, lb = as_list(a), as_list(b)
        if not la or not lb:
            raise ImageError("no images given")
        feats = self.embed(la + lb, **kwargs)  # one batch; repeated images are embedded once
        return feats[: len(la)], feats[len(la):]

    def score(self, a: ImagesLike, b: ImagesLike, **kwargs: Any) -> float | torch.Tensor:
        """Score of image ``a`` against ``b``: a float for two single images, else a tensor (N,).

        Batches pair up element by element; a single image broadcasts against a batch.
        """
        fa, fb = self._embed_both(a, b, **kwargs)
        if len(fa) != len(fb) and 1 not in (len(fa), len(fb)):
            raise ImageError(f"cannot pair {len(fa)} images with {len(fb)}: give equal counts, or one image "
                             "against many (use matrix() for all pairs)")
        out = self.compare(fa, fb)
        return float(out[0]) if is_single(a) and is_single(b) else out

    def matrix(self, a: ImagesLike, b: ImagesLike | None = None, **kwargs: Any) -> torch.Tensor:
        """All-pairs scores (N, M) between ``a`` and ``b`` (``b`` defaults to ``a``)."""
        if b is None:
            fa = self.embed(a, **kwargs)
            return self.compare_matrix(fa, fa)
        fa, fb = self._embed_both(a, b, **kwargs)
        return self.compare_matrix(fa, fb)
