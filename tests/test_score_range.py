"""Every registered metric: an image against itself scores exactly its identity value, and no score leaves its range.

Identity: 1.0 for a similarity (``scale`` for a scaled cosine), 0.0 for a distance, bit for bit: from ``score``,
on the diagonal of ``matrix`` and for a stored copy of the query in a gallery store. Range: cosines in
[-scale, scale], distances >= 0. The clamping itself is checked on inputs where the unclamped float32
arithmetic leaves the range.
"""

from __future__ import annotations

import pytest
import torch

from diffsim import aas, create_metric, list_metrics
from diffsim.aas import QKV
from diffsim.features import Features
from diffsim.metrics.vit_embed import EmbeddingCosine
from diffsim.similarity import cosine_matrix, cosine_rows, unit_dot_matrix, unit_dot_rows

from .conftest import SIZE
from .test_every_metric import tiny_overrides


def _identity(metric) -> float:
    if not metric.higher_is_better:
        return 0.0
    return float(metric.settings.scale) if isinstance(metric, EmbeddingCosine) else 1.0


def _in_range(metric, s: torch.Tensor) -> None:
    if metric.higher_is_better:
        top = _identity(metric)
        assert (s >= -top).all() and (s <= top).all(), s
    else:
        assert (s >= 0).all(), s


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    x = torch.rand(4, 3, SIZE, SIZE, generator=g)
    x[1] = 0.9 * x[0] + 0.1 * x[1]  # a near pair, where rounding is closest to identity
    x[3] = x[3].round()  # saturated pixels
    return x


@pytest.mark.parametrize("name", list_metrics())
def test_identity_exact_and_range_respected(name, tiny_model_paths, images):
    metric = create_metric(name, **tiny_overrides(name, tiny_model_paths))
    ident = _identity(metric)
    assert metric.score(images[0], images[0]) == ident
    assert metric.score(images[1], images[1].clone()) == ident  # same content, another tensor
    feats = metric.embed(images)
    assert metric.compare(feats, feats).tolist() == [ident] * 4
    m = metric.matrix(images)
    assert torch.diagonal(m).tolist() == [ident] * 4
    _in_range(metric, m)
    assert (m - ident).abs().max() > 1e-6  # other pairs are real scores, not pinned
    _in_range(metric, metric.compare(feats, feats[[1, 2, 3, 0]]))


def test_retrieve_stored_copy_scores_exactly_one(tmp_path, tiny_model_paths, images):
    from PIL import Image

    from diffsim.gallery import GalleryStore, collect
    from diffsim.gallery.build import build_index
    from diffsim.gallery.search import Gallery

    metric = create_metric("csd", **tiny_overrides("csd", tiny_model_paths))
    folder = tmp_path / "g"
    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray((im.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(folder / f"{i}.png")
    store = GalleryStore.create(tmp_path / "s", metric, root=str(folder))
    build_index(collect(folder), store, metric)
    hits = Gallery(store, metric).search([str(folder / "2.png")], k=2)[0]
    assert hits[0].score == 1.0 and hits[1].score < 1.0


# ------------------------------------------------------------------ the clamps, where float32 leaves the range
def _over_one() -> torch.Tensor:
    """Rows whose float32 self-cosine (unclamped) exceeds 1."""
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        x = torch.randn(64, 257, generator=g) * 1e3
        y = x * 3.0  # same direction, other bits: not pinned
        if (torch.nn.functional.cosine_similarity(x, y, dim=1) > 1).any():
            return x
    raise AssertionError("no float32 overshoot found")


def test_cosines_are_clamped_and_pinned():
    x = _over_one()
    assert cosine_rows(x, x * 3.0).max() <= 1.0 and cosine_rows(-x, x * 3.0).min() >= -1.0
    assert cosine_matrix(x, x * 3.0).max() <= 1.0
    assert cosine_rows(x, x).tolist() == [1.0] * len(x)
    assert torch.diagonal(cosine_matrix(x, x)).tolist() == [1.0] * len(x)
    u = torch.nn.functional.normalize(x, dim=1)
    assert unit_dot_rows(u, u).tolist() == [1.0] * len(x)
    assert torch.diagonal(unit_dot_matrix(u, u)).tolist() == [1.0] * len(x)
    assert unit_dot_rows(u, -u).min() >= -1.0 and unit_dot_matrix(u, u).max() <= 1.0


def test_aas_cosine_clamped_where_float32_overshoots():
    x = _over_one()
    q = x.reshape(64, 1, 257, 1)  # one token per... (N, group, T, D) with D = 1
    a = QKV(q, q, q)
    b = QKV(q, q * 2.0, q * 3.0)  # other keys and values: not pinned
    s = aas.aas(a, b)
    assert (s <= 1.0).all() and (s >= -1.0).all()
    w = torch.ones(64, 257)
    assert (aas.aas(a, b, weights_a=w) <= 1.0).all()


def test_dreamsim_and_dists_distances_never_negative(tiny_model_paths, images):
    for name in ("dreamsim-dino-vitb16", "dists"):
        metric = create_metric(name, **tiny_overrides(name, tiny_model_paths))
        f = metric.embed(images)
        # the same features in another tensor (a copy: bitwise equal) are exactly 0
        again = Features({k: v.clone() for k, v in f.tensors.items()}, dict(f.config))
        assert metric.compare(f, again).tolist() == [0.0] * 4
        assert (metric.compare_matrix(f, again) >= 0).all()
