"""The AAS math on synthetic Q/K/V: properties and parity with an explicit per-pair computation."""

from __future__ import annotations

import math

import pytest
import torch

from diffsim import aas
from diffsim.aas import QKV


def _qkv(n: int, seed: int, groups=(2, 3), tokens: int = 5, dim: int = 4) -> QKV:
    g = torch.Generator().manual_seed(seed)
    shape = (n, *groups, tokens, dim)
    return QKV(*(torch.randn(shape, generator=g) for _ in range(3)))


def _explicit_aas(a: QKV, b: QKV, i: int, j: int) -> float:
    """AAS(A_i, B_j) with a hand-written softmax attention and one cosine over everything."""

    def att(q, k, v):
        w = torch.softmax(q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
        return (w @ v.double()).flatten()

    x, y = att(a.q[i], b.k[j], b.v[j]), att(a.q[i], a.k[i], a.v[i])
    return float(x @ y / (x.norm() * y.norm()))


def test_identical_features_score_one():
    a = _qkv(3, 0)
    assert torch.allclose(aas.score(a, a), torch.ones(3), atol=1e-6)


def test_score_is_symmetric_and_matches_explicit():
    a, b = _qkv(3, 0), _qkv(3, 1)
    s_ab, s_ba = aas.score(a, b), aas.score(b, a)
    assert torch.allclose(s_ab, s_ba, atol=1e-7)
    for i in range(3):
        ref = 0.5 * (_explicit_aas(a, b, i, i) + _explicit_aas(b, a, i, i))
        assert s_ab[i].item() == pytest.approx(ref, abs=1e-6)
    assert (s_ab < 1 - 1e-4).all()


def test_matrix_equals_pairwise_and_broadcast():
    a, b = _qkv(2, 0), _qkv(3, 1)
    m = aas.score_matrix(a, b)
    assert m.shape == (2, 3)
    for i in range(2):
        row = aas.score(QKV(a.q[i : i + 1], a.k[i : i + 1], a.v[i : i + 1]), b)  # one against many broadcasts
        assert torch.allclose(m[i], row, atol=1e-6)
        for j in range(3):
            ref = 0.5 * (_explicit_aas(a, b, i, j) + _explicit_aas(b, a, j, i))
            assert m[i, j].item() == pytest.approx(ref, abs=1e-6)


def test_mse_variant_zero_on_identity_and_positive_otherwise():
    a, b = _qkv(2, 0), _qkv(2, 1)
    assert torch.allclose(aas.score(a, a, "mse"), torch.zeros(2), atol=1e-10)
    assert (aas.score(a, b, "mse") > 0).all()
    with pytest.raises(ValueError, match="similarity"):
        aas.score(a, b, "l1")


def test_token_map_shape_and_identity():
    a, b = _qkv(2, 0, tokens=9), _qkv(2, 1, tokens=9)
    tm = aas.token_map(a, b)
    assert tm.shape == (2, 9)
    assert torch.allclose(aas.token_map(a, a), torch.ones(2, 9), atol=1e-6)
    assert (tm.abs() <= 1 + 1e-6).all()


def test_half_precision_inputs_reduce_in_float32():
    a, b = _qkv(2, 0), _qkv(2, 1)
    half = aas.score(QKV(a.q.half(), a.k.half(), a.v.half()), QKV(b.q.half(), b.k.half(), b.v.half()))
    assert half.dtype == torch.float32
    assert torch.allclose(half, aas.score(a, b), atol=2e-3)
