"""Property checks shared by the metric-zoo tests (identity, symmetry, batch = single, matrix)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def clear_caches(metric) -> None:
    """Empty every feature cache and backbone cache (latents, prompts) of ``metric`` (and of its members)."""
    for m in getattr(metric, "members", [metric]):
        m.cache.clear()
        clear = getattr(m.backbone, "clear_caches", None)
        if clear is not None:
            clear()


@contextmanager
def module_calls() -> Iterator[list[int]]:
    """Count every ``nn.Module`` forward call in the block (a global hook on the real modules): ``[count]``."""
    count = [0]

    def hook(module, args):
        count[0] += 1

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


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
    # batch = single, every single embedded afresh: caches cleared, the network's module calls counted
    # (a feature served from a cache runs no module, so it cannot pass this)
    one = []
    for i in range(3):
        clear_caches(metric)
        with module_calls() as calls:
            one.append(metric.embed(images[i]))
        assert calls[0] > 0, f"image {i} was not embedded by the network"
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
