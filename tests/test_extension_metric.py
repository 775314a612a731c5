"""A throw-away metric defined here, registered through the public extension point, and run through the
registry-driven property tests, ``create_metric``, ``as_loss`` and a gradient check: a new metric (loss
included) is one class and one registry row, with no shared file edited.

The metric has no network (a pixel MSE on resized images), so it also shows that the property tests
hold for a network-free metric unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from diffsim import ConfigError, ImageError, create_metric, registry
from diffsim.bounds import positive_int
from diffsim.features import Features
from diffsim.functional import resize_square
from diffsim.images import as_list, describe, to_unit_tensor
from diffsim.loss import DiffSimLoss
from diffsim.metrics import Metric
from diffsim.registry import MetricInfo, differentiable_metrics, register_metric
from diffsim.settings import Settings

from .zoo_props import check_registered_metric

NAME = "test-thumb-mse"
SIZE = 16


@dataclasses.dataclass(frozen=True)
class ThumbSettings(Settings):
    size: int = SIZE

    def validate(self) -> None:
        positive_int("size", self.size)

    @property
    def higher_is_better(self) -> bool:
        return False  # a distance


class ThumbMSE(Metric):
    """Mean squared difference of the images resized to ``size`` x ``size``; lower is closer, 0 = identical."""

    Settings = ThumbSettings
    settings: ThumbSettings
    default_name = NAME
    is_differentiable = True

    def embed(self, images: Any, progress: bool = False, **options: Any) -> Features:
        items = as_list(images)
        if not items:
            raise ImageError("no images given")
        x = torch.stack([to_unit_tensor(im, self.settings.size, "none", i) for i, im in enumerate(items)])
        return Features({"px": x}, self.config, [describe(im, i) for i, im in enumerate(items)])

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        return (a.tensors["px"] - b.tensors["px"]).pow(2).flatten(1).mean(1)

    def differentiable_scores(
        self, x: torch.Tensor, y: torch.Tensor, noise: Any = None, checkpoint: bool = False
    ) -> torch.Tensor:
        s = self.settings.size
        return (resize_square(x, s) - resize_square(y, s)).pow(2).flatten(1).mean(1)


class NoGrad(ThumbMSE):
    default_name = "test-thumb-nograd"
    is_differentiable = False


@pytest.fixture
def registered(monkeypatch):
    """The two metrics registered for this test only (the registry is restored afterwards)."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_metric(MetricInfo(NAME, ThumbMSE, "pixel MSE of thumbnails (test)", backbone="none", polarity="lower"))
    register_metric(MetricInfo(NoGrad.default_name, NoGrad, "no differentiable path (test)", backbone="none"))


def _images(n: int = 3, side: int = SIZE, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, side, side, generator=g, dtype=torch.float64)
    x[1] = 0.6 * x[0] + 0.4 * x[1]  # one pair clearly closer than the others
    return x.float()


def test_the_registry_driven_properties_hold(registered):
    metric = check_registered_metric(NAME, {}, _images())
    assert type(metric) is ThumbMSE and NAME in differentiable_metrics()
    assert NoGrad.default_name not in differentiable_metrics()


def test_as_loss_is_the_distance_and_reaches_the_pixels(registered):
    metric = create_metric(NAME)
    x, y = _images()[:2], _images(seed=5)[:2]
    loss_fn = metric.as_loss("none")
    assert isinstance(loss_fn, DiffSimLoss) and list(loss_fn.parameters()) == []
    xr = x.clone().requires_grad_(True)
    got = loss_fn(xr, y)
    assert torch.equal(got.detach(), metric.score(x, y))  # at the working size: the cached score exactly
    got.sum().backward()
    assert xr.grad is not None and torch.allclose(xr.grad, 2 * (x - y) / x[0].numel())
    with pytest.raises(ConfigError, match="noise='fresh' applies to diffusion metrics"):
        metric.as_loss(noise="fresh")


def test_gradcheck_through_the_resize(registered):
    metric = create_metric(NAME, size=8)
    g = torch.Generator().manual_seed(0)
    low = 0.3 + 0.4 * torch.rand(2, 2, 3, 3, 3, generator=g, dtype=torch.float64)  # smooth: no clamping
    x, y = (torch.nn.functional.interpolate(t, size=(12, 12), mode="bilinear") for t in low)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: metric.as_loss("none")(a, b), (x, y), eps=1e-6, atol=1e-8)


def test_a_metric_without_the_capability_is_refused_naming_the_ones_with_it(registered):
    metric = create_metric("test-thumb-nograd")
    with pytest.raises(ConfigError, match=f"test-thumb-nograd cannot be a loss; differentiable: .*{NAME}"):
        metric.as_loss()
    with pytest.raises(ConfigError, match=f"test-thumb-nograd has no differentiable path; differentiable: .*{NAME}"):
        Metric.differentiable_scores(metric, _images()[:1], _images()[:1])
