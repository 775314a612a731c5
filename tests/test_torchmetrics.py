"""DiffSimScore: a torchmetrics Metric equal to DiffSim.score, with torchmetrics' state handling."""

from __future__ import annotations

import pytest
import torch

from diffsim import ConfigError, ImageError

tm = pytest.importorskip("torchmetrics")
from diffsim.integrations.torchmetrics import DiffSimScore  # noqa: E402

from .conftest import SIZE  # noqa: E402


@pytest.fixture(scope="module")
def batches():
    g = torch.Generator().manual_seed(11)
    return [(torch.rand(n, 3, SIZE, SIZE, generator=g), torch.rand(n, 3, SIZE, SIZE, generator=g)) for n in (2, 1)]


def test_equals_diffsim_score(sharp_sd_path, sharp_metric, batches):
    m = DiffSimScore(sharp_sd_path, layer="up1", size=SIZE, device="cpu", dtype="float32")
    assert isinstance(m, tm.Metric) and m.higher_is_better is True
    assert m.is_differentiable is False and m.full_state_update is False
    for p, t in batches:
        m.update(p, t)
    want = torch.cat([sharp_metric.score(p, t) for p, t in batches])
    assert want.shape == (3,) and want.std() > 0.01
    assert torch.allclose(m.compute(), want.mean(), atol=1e-6)
    m.reset()
    m.update(*batches[1])
    assert torch.allclose(m.compute(), want[2:].mean(), atol=1e-6)


def test_reduction_none_and_named_metric(sharp_sd_path, sharp_metric, batches):
    m = DiffSimScore(
        metric="diffsim-s", model=sharp_sd_path, layer="up1", size=SIZE, device="cpu", dtype="float32", reduction="none"
    )
    assert m.similarity.config["step"] == 500
    for p, t in batches:
        m.update(p, t)
    want = torch.cat([sharp_metric.score(p, t) for p, t in batches])
    assert torch.allclose(m.compute(), want, atol=1e-6)


def test_distance_metric_polarity(sharp_metric, batches):
    mse = DiffSimScore(metric=sharp_metric.with_settings(similarity="mse"), reduction="none")
    assert mse.higher_is_better is False
    mse.update(*batches[0])
    assert torch.allclose(mse.compute(), sharp_metric.with_settings(similarity="mse").score(*batches[0]), atol=1e-6)


def test_states_merge_like_one_process(sharp_metric, batches):
    """Two 'ranks' each see half the data; merging their states (as a sync does) equals one pass over all."""
    whole, r0, r1 = (DiffSimScore(metric=sharp_metric) for _ in range(3))
    for p, t in batches:
        whole.update(p, t)
    r0.update(*batches[0])
    r1.update(*batches[1])
    r0.merge_state(r1)
    assert torch.allclose(r0.compute(), whole.compute(), atol=1e-7)
    # the mean is over pairs (2 + 1), not the mean of the two ranks' means
    means = torch.stack([sharp_metric.score(*b).mean() for b in batches]).mean()
    assert not torch.allclose(whole.compute(), means, atol=1e-6)
    forward = DiffSimScore(metric=sharp_metric, reduction="none")
    step = forward(*batches[1])  # torchmetrics' forward: this batch's value, accumulated too
    assert torch.allclose(step, sharp_metric.score(*batches[1]), atol=1e-6) and len(forward.scores) == 1


@pytest.mark.filterwarnings("ignore:The ``compute`` method:UserWarning")
def test_errors(sharp_metric):
    with pytest.raises(ConfigError, match="reduction"):
        DiffSimScore(metric=sharp_metric, reduction="sum")
    with pytest.raises(ConfigError, match="ready metric instance"):
        DiffSimScore(metric=sharp_metric, step=10)
    m = DiffSimScore(metric=sharp_metric)
    with pytest.raises(ConfigError, match="before any update"):
        m.compute()
    with pytest.raises(ImageError, match=r"preds must be a tensor \(N, 3, H, W\)"):
        m.update(torch.rand(3, SIZE, SIZE), torch.rand(3, SIZE, SIZE))
    with pytest.raises(ImageError, match="same number"):
        m.update(torch.rand(2, 3, SIZE, SIZE), torch.rand(3, 3, SIZE, SIZE))
