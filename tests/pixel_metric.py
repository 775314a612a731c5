"""A cheap real Metric for harness tests: pixels downsampled to 8x8, negative MSE (or MSE as a distance)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from diffsim.features import Features
from diffsim.images import as_list, describe, to_unit_tensor
from diffsim.metrics.base import Metric
from diffsim.settings import Settings


@dataclasses.dataclass(frozen=True)
class PixelSettings(Settings):
    distance: bool = False
    invert: bool = False  # a broken metric: scores the opposite way (swapped-label check)

    @property
    def higher_is_better(self) -> bool:
        return not self.distance


class PixelMetric(Metric):
    """Negative MSE of 8x8 thumbnails (``distance=True``: plain MSE, lower is closer)."""

    Settings = PixelSettings
    default_name = "test-pixel"
    accepts_prompt = True

    def __init__(self, settings: PixelSettings | None = None, *, name: str | None = None, **kw: Any) -> None:
        super().__init__(settings or PixelSettings(**kw), name=name)
        self.distance, self.invert = self.settings.distance, self.settings.invert
        self.embed_calls = 0
        self.images_seen: list[str] = []
        self.prompts: list[Any] = []

    def embed(self, images, progress: bool = False, prompt: str | None = None, **_: Any) -> Features:
        items = as_list(images)
        self.embed_calls += 1
        self.images_seen += [str(i) for i in items]
        self.prompts.append(prompt)
        x = torch.stack([to_unit_tensor(im, 8, "none", i) for i, im in enumerate(items)])
        return Features({"px": x}, self.config, [describe(im, i) for i, im in enumerate(items)])

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        mse = ((a.tensors["px"] - b.tensors["px"]) ** 2).flatten(1).mean(1)
        if self.invert:
            mse = -mse
        return mse if self.distance else -mse


class ConstantMetric(PixelMetric):
    """Every pair scores the same: every triplet is a tie."""

    default_name = "test-constant"

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        return torch.zeros(max(len(a), len(b)))


def register_test_metrics() -> None:
    from diffsim.registry import MetricInfo, register_metric

    for name, kw in (("test-pixel", {}), ("test-pixel-distance", {"distance": True})):
        register_metric(
            MetricInfo(name=name, cls=PixelMetric, description="test metric", backbone="none", defaults=kw),
            overwrite=True,
        )
