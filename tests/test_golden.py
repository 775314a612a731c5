"""Golden fingerprints: every registered metric's scores and each backbone's Q/K/V on the tiny models.

Like diffusers' ``expected_slice``: the numbers in ``tests/golden/fingerprints.json`` were computed by
``python -m tests.golden.regenerate``; any drift beyond the stated tolerance fails here. A metric that is
registered but has no fingerprint fails too (new metrics must add theirs). When a change is meant to move
the numbers, regenerate and say why in the commit message (``--note``).
"""

from __future__ import annotations

import json
import math
import sys

import pytest

from diffsim import list_metrics

from .golden.compute import (
    FILE,
    PAIRS,
    QKV_ATOL,
    REGEN,
    SCORE_ATOL,
    SCORE_RTOL,
    backbone_qkv,
    fixture_images,
    metric_scores,
    qkv_metrics,
)

GOLDEN = json.loads(FILE.read_text())


@pytest.fixture(scope="module")
def paths(tiny_model_paths) -> dict[str, str]:
    return tiny_model_paths


@pytest.fixture(scope="module")
def images():
    return fixture_images()


def test_tolerances_are_the_stated_ones():
    """The file records the tolerances it was written for; the test uses the same."""
    assert GOLDEN["tolerance"] == {"score_atol": SCORE_ATOL, "score_rtol": SCORE_RTOL, "qkv_atol": QKV_ATOL}


def test_no_fingerprint_for_an_unregistered_metric():
    stale = sorted(set(GOLDEN["scores"]) - set(list_metrics()))
    assert not stale, f"fingerprints for metrics no longer registered: {stale}; regenerate: {REGEN}"


@pytest.mark.parametrize("name", list_metrics())
def test_metric_scores_match_golden(name, paths, images):
    if name not in GOLDEN["scores"]:
        pytest.fail(f"registered metric {name!r} has no golden fingerprint in {FILE.name}; add it with: {REGEN}")
    want = GOLDEN["scores"][name]
    got = metric_scores(name, paths, images)
    assert len(got) == len(want) == len(PAIRS)
    bad = [
        f"pair {PAIRS[i]}: got {g!r}, golden {w!r} (diff {abs(g - w):.2e})"
        for i, (g, w) in enumerate(zip(got, want, strict=True))
        if not math.isclose(g, w, rel_tol=SCORE_RTOL, abs_tol=SCORE_ATOL)
    ]
    assert not bad, f"{name} drifted from its golden scores:\n" + "\n".join(bad) + f"\nIf intended: {REGEN}"


@pytest.mark.parametrize("backbone", sorted(qkv_metrics()))
def test_backbone_qkv_matches_golden(backbone, paths, images):
    want = GOLDEN["qkv"][backbone]
    got = backbone_qkv(qkv_metrics()[backbone], paths, images)
    for part in ("q", "k", "v"):
        assert got[part]["shape"] == want[part]["shape"], f"{backbone} {part} shape; if intended: {REGEN}"
        pairs = [*zip(got[part]["values"], want[part]["values"], strict=True)]
        pairs.append((got[part]["mean_abs"], want[part]["mean_abs"]))
        worst = max(abs(g - w) for g, w in pairs)
        assert worst <= QKV_ATOL, f"{backbone} {part} drifted by {worst:.2e} > {QKV_ATOL}; if intended: {REGEN}"


def test_a_metric_without_fingerprint_fails(monkeypatch, paths, images):
    """A newly registered metric with no golden entry makes the test fail with the regenerate hint."""
    from diffsim import registry

    monkeypatch.setitem(registry._REGISTRY, "brand-new", registry.metric_info("gram"))
    with pytest.raises(
        pytest.fail.Exception, match=r"'brand-new' has no golden fingerprint.*tests\.golden\.regenerate"
    ):
        test_metric_scores_match_golden("brand-new", paths, images)


def test_a_moved_score_fails(monkeypatch, paths, images):
    """The comparison can fail: a score moved by 10x the tolerance is reported with the pair and the diff."""
    from .golden import compute

    real = compute.metric_scores

    def moved(name, paths, images):
        out = real(name, paths, images)
        out[1] += 10 * (SCORE_ATOL + SCORE_RTOL)
        return out

    monkeypatch.setattr(sys.modules[__name__], "metric_scores", moved)
    with pytest.raises(AssertionError, match=r"(?s)gram drifted.*pair \(0, 4\)"):
        test_metric_scores_match_golden("gram", paths, images)
