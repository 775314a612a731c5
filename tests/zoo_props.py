"""Property checks shared by the metric-zoo tests (identity, symmetry, batch = single, matrix).

The properties any metric must pass, network or not: identity scores best (1 for similarities, 0 for
distances) and better than any other image; symmetry; a batch scores as its singles, each single
embedded afresh (caches cleared, and a feature cache must report a miss for it); ``compare_matrix``
rows equal ``compare``; ``score`` of two single images is a float.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import torch

from diffsim import ConfigError, ImageError, create_metric, metric_info


def clear_caches(metric) -> None:
    """Empty every feature cache and backbone cache (latents, prompts) of ``metric`` (and of its members)."""
    for m in getattr(metric, "members", [metric]):
        cache = getattr(m, "cache", None)
        if cache is not None:
            cache.clear()
        clear = getattr(getattr(m, "backbone", None), "clear_caches", None)
        if clear is not None:
            clear()


def cache_misses(metric) -> int | None:
    """Feature-cache misses of ``metric`` (summed over its members); None for a metric without a feature
    cache (its ``embed`` computes every time)."""
    caches = [m.cache for m in getattr(metric, "members", [metric]) if getattr(m, "cache", None) is not None]
    return sum(c.misses for c in caches) if caches else None


def check_properties(metric, images: torch.Tensor, atol: float = 1e-5) -> None:
    """``images``: (3, 3, S, S) in [0, 1], three distinct images."""
    feats = metric.embed(images)
    best = metric.compare(feats, feats)
    if metric.higher_is_better:
        assert torch.allclose(best, torch.ones_like(best), atol=1e-4), best
    else:
        assert torch.allclose(best, torch.zeros_like(best), atol=1e-5), best
    ab = metric.compare(feats[0:2], feats[1:3])
    ba = metric.compare(feats[1:3], feats[0:2])
    assert torch.allclose(ab, ba, atol=atol)
    # identity is the best score against any other image
    other = metric.compare(feats[0], feats[1:])
    if metric.higher_is_better:
        assert (other < best[0] - 1e-6).all(), (other, best)
    else:
        assert (other > best[0] + 1e-6).all(), (other, best)
    # batch = single, every single embedded afresh: caches cleared, then each single image must miss the
    # feature cache (a metric with a cache computes it; one without a cache, e.g. a network-free pixel
    # metric, computes every call by construction)
    one = []
    for i in range(3):
        clear_caches(metric)
        before = cache_misses(metric)
        one.append(metric.embed(images[i]))
        after = cache_misses(metric)
        assert before is None or after is not None and after > before, f"image {i} was served from a cache"
    singles = torch.stack([metric.compare(one[i], one[(i + 1) % 3])[0] for i in range(3)])
    batched = metric.compare(feats, feats[[1, 2, 0]])
    assert torch.allclose(singles, batched, atol=atol)
    m = metric.compare_matrix(feats, feats[[1, 2]])
    assert m.shape == (3, 2)
    for i in range(3):
        assert torch.allclose(m[i], metric.compare(feats[i], feats[[1, 2]]), atol=atol)
    # score() on single images returns a float consistent with compare
    s = metric.score(images[0], images[1])
    assert isinstance(s, float) and abs(s - float(ab[0])) < 1e-4


def check_registered_metric(name: str, overrides: dict, images: torch.Tensor) -> Any:
    """A registered metric built by name (``create_metric(name, **overrides)``): registry data matches the
    instance, the :func:`check_properties` hold, ``with_settings`` keeps the class and every setting, the
    config is JSON. Returns the metric."""
    metric = create_metric(name, **overrides)
    info = metric_info(name)
    assert metric.name == name and type(metric) is info.metric_class
    assert metric.higher_is_better == info.higher_is_better  # polarity: registry == instance
    json.dumps(metric.config)  # JSON-serialisable
    assert metric.config["metric"] == name
    check_properties(metric, images)
    with pytest.raises(ImageError, match="no images"):
        metric.embed([])

    if metric.votes:  # the ensemble: rebuilt from its members' names through the registry
        again = metric.with_settings()
        assert type(again) is type(metric) and again.settings == metric.settings
        return metric
    # with_settings: same class, every setting kept (and the loaded model shared)
    same = metric.with_settings()
    assert (
        type(same) is type(metric)
        and same.settings == metric.settings
        and getattr(same, "backbone", None) is getattr(metric, "backbone", None)
    )
    field = "size" if "size" in metric.settings.names() else None
    if field:
        changed = metric.with_settings(size=metric.settings.size * 2)
        assert type(changed) is type(metric) and changed.settings.size == metric.settings.size * 2
        rest = {f.name for f in dataclasses.fields(metric.settings)} - {"size"}
        assert all(getattr(changed.settings, f) == getattr(metric.settings, f) for f in rest)
    with pytest.raises(ConfigError, match="unknown setting 'no_such_setting'"):
        metric.with_settings(no_such_setting=1)
    return metric
