"""The interface every metric implements: ``embed`` (per-image features, cacheable) and ``compare`` (cheap).

``score`` and ``matrix`` are built on those two, so benchmarks, sweeps and retrieval never run a
network twice on the same image: embed every distinct image once, then compare features.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from ..cache import FeatureCache, config_key
from ..errors import ImageError
from ..features import Features
from ..images import ImagesLike, as_list, content_hash, describe, is_single


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def embed_cached(images: ImagesLike, fcfg: Mapping[str, Any], prepare: Callable[[Any, int], torch.Tensor],
                 compute: Callable[[torch.Tensor], Features], cache: FeatureCache, batch_size: int,
                 device: torch.device | str, progress: bool = False) -> Features:
    """The embed loop every metric shares: preprocess, look up the cache, run the network on misses only.

    ``prepare(image, index)`` turns one input into its preprocessed pixel tensor (validating it);
    ``compute(batch)`` runs the network on a stacked batch and returns per-image features. Images with
    identical pixels (within the call or in the cache) are computed once per ``fcfg``.
    """
    items = as_list(images)
    if not items:
        raise ImageError("no images given")
    names = [describe(im, i) for i, im in enumerate(items)]
    ckey = config_key(fcfg)
    pixels = [prepare(im, i) for i, im in enumerate(items)]
    keys = [content_hash(p) for p in pixels]
    found: dict[str, Features] = {}
    todo: dict[str, torch.Tensor] = {}
    for key, px in zip(keys, pixels):
        if key in found or key in todo:
            continue
        hit = cache.get((ckey, key))
        if hit is not None:
            found[key] = hit.to(device)
        else:
            todo[key] = px
    batches = list(_chunks(list(todo.items()), batch_size))
    for batch in tqdm(batches, desc="embedding", unit="batch", disable=not progress or not batches):
        feats = compute(torch.stack([px for _, px in batch]))
        for i, (key, _) in enumerate(batch):
            one = Features({k: v[i : i + 1].clone() for k, v in feats.tensors.items()}, feats.config)  # own storage
            cache.put((ckey, key), one)
            found[key] = one
    out = Features.cat([found[k] for k in keys])
    return Features(out.tensors, dict(fcfg), names)


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

    def decide(self, ref: Features, a: Features, b: Features) -> torch.Tensor:
        """2AFC decision per triplet: +1 if ``a`` is closer to ``ref``, -1 if ``b`` is, 0 on an exact tie.

        Polarity-aware (distances: lower is closer). Benchmarks should call this rather than comparing
        scores themselves, so that voting metrics (:class:`~diffsim.metrics.ensemble.Ensemble`) fit too.
        """
        sa, sb = self.compare(ref, a), self.compare(ref, b)
        d = torch.sign(sa - sb)
        return (d if self.higher_is_better else -d).to(torch.int8)

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
