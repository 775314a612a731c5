"""Identity is exact (1.0 / 0.0) where features are identical; what batch composition may change."""

from __future__ import annotations

import pytest
import torch

from diffsim import aas
from diffsim.aas import QKV

from .test_aas import _explicit_aas, _qkv


def test_identical_features_score_exactly_one_everywhere():
    # large values make float32 rounding visible: cosine(x, x) computed naively is not exactly 1
    a = QKV(*(t * 30 for t in (_qkv(4, 0).q, _qkv(4, 1).k, _qkv(4, 2).v)))
    assert aas.score(a, a).tolist() == [1.0] * 4
    assert aas.score(a, a, "mse").tolist() == [0.0] * 4
    m = aas.score_matrix(a, a)
    assert torch.diagonal(m).tolist() == [1.0] * 4
    assert (m - torch.eye(4)).abs().max() > 1e-4  # off-diagonal pairs are not forced
    w = torch.rand(4, a.q.shape[-2], generator=torch.Generator().manual_seed(3))
    assert aas.score(a, a, weights_a=w, weights_b=w, mask_keys=True).tolist() == [1.0] * 4
    assert torch.diagonal(aas.score_matrix(a, a, weights_a=w, weights_b=w, mask_keys=True)).tolist() == [1.0] * 4
    # broadcast: one image against a batch that contains it
    one = QKV(a.q[2:3], a.k[2:3], a.v[2:3])
    s = aas.score(one, a)
    assert s[2].item() == 1.0 and all(s[i].item() < 1.0 for i in (0, 1, 3))


def test_same_keys_other_masks_or_queries_are_not_forced():
    a = _qkv(2, 0)
    w1 = torch.zeros(2, a.q.shape[-2])
    w1[:, :2] = 1.0
    w2 = torch.ones(2, a.q.shape[-2])
    s = aas.score(a, a, weights_a=w1, weights_b=w2, mask_keys=True)  # different key masks: a real score
    assert (s < 1.0).all()
    b = QKV(_qkv(2, 5).q, a.k, a.v)  # B shares A's keys/values but has other queries: AAS(A,B) is exactly 1
    assert aas.aas(a, b).tolist() == [1.0, 1.0]
    for i in range(2):
        assert aas.aas(b, a)[i].item() == pytest.approx(_explicit_aas(b, a, i, i), abs=1e-6)


def test_other_pairs_unchanged_against_explicit_reference():
    a, b = _qkv(3, 0), _qkv(3, 1)
    m = aas.score_matrix(a, b)
    for i in range(3):
        for j in range(3):
            ref = 0.5 * (_explicit_aas(a, b, i, j) + _explicit_aas(b, a, j, i))
            assert m[i, j].item() == pytest.approx(ref, abs=1e-6)


def test_metric_identity_and_batch_composition(tiny_metric, image_files):
    """Promise: an image against itself scores exactly 1.0; a score may change in the ~6th digit with the
    other images embedded in the same batch (float32 CPU kernels), never more than 1e-5."""
    from diffsim.cache import FeatureCache

    def fresh():  # own cache: really recomputed
        return type(tiny_metric)(
            tiny_metric.settings.replace(tiny_metric.name, batch_size=8),
            backbone=tiny_metric.backbone,
            cache=FeatureCache(),
        )

    a, b = str(image_files[0]), str(image_files[1])
    assert tiny_metric.score(a, a) == 1.0
    assert torch.diagonal(tiny_metric.matrix(image_files[:4])).tolist() == [1.0] * 4
    alone = fresh().score(a, b)
    crowd = fresh().matrix([a, b, *map(str, image_files[2:])])[0, 1]
    assert abs(alone - float(crowd)) < 1e-5
