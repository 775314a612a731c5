"""``DiffSimScore``: DiffSim (or any registered metric) as a ``torchmetrics.Metric``.

Needs the extra ``diffsim-metric[torchmetrics]``.

    from diffsim.integrations.torchmetrics import DiffSimScore
    m = DiffSimScore(step=500)                 # same settings as DiffSim.from_pretrained
    m.update(preds, target)                    # (N, 3, H, W) in [0, 1]
    m.compute()                                # mean score; reduction="none" gives every pair's score

Per-pair scores are kept in a list state reduced with ``cat``, so torchmetrics gathers them across
processes before ``compute`` (the mean is over all pairs of all processes, not a mean of means).

Generated batches go through the functional path (:mod:`diffsim.functional`) for the metrics it
serves (DiffSim-S / -C on SD, SDXL, DiT, CLIP / DINOv2 AAS, LPIPS): on the metric's device, no
feature cache (every batch is new), and images not at the working size are resized on the device
(Pillow's Lanczos as two matrix products, the functional default: docs/loss.md gives the difference to
the cached pixels). Other metrics use
``metric.score``. With ``as_loss=True``, ``m(preds, target)`` returns the batch score with its autograd
graph (``is_differentiable`` is then True; the accumulated states are detached); for a loss to
minimise use ``1 - m(preds, target)`` or ``metric.as_loss()``.
"""

from __future__ import annotations

from typing import Any

import torch

from .._optional import require
from ..errors import ConfigError, ImageError
from ..images import _check_range, _int_to_unit
from ..registry import differentiable_metrics

require("torchmetrics", "torchmetrics", "diffsim.integrations.torchmetrics")
from torchmetrics import Metric as TorchMetric  # noqa: E402
from torchmetrics.utilities import dim_zero_cat  # noqa: E402

# keyword arguments that belong to torchmetrics.Metric rather than to the similarity metric
_TM_KWARGS = (
    "compute_on_cpu",
    "dist_sync_on_step",
    "process_group",
    "dist_sync_fn",
    "distributed_available_fn",
    "sync_on_compute",
    "compute_with_cache",
)
REDUCTIONS = ("mean", "none")


class DiffSimScore(TorchMetric):
    """Mean DiffSim score of ``preds[i]`` against ``target[i]`` over every pair seen.

    ``model`` and ``settings`` are passed to ``DiffSim.from_pretrained`` (layer, step, size, device...);
    ``metric="NAME"`` builds a registered metric instead (``create_metric(NAME, **settings)``), and a
    ready :class:`~diffsim.metrics.base.Metric` instance may be passed as ``metric`` too. The
    similarity model is not a submodule: ``.to(device)`` moves the states only; choose the model's
    device with ``device=``.
    """

    full_state_update = False
    scores: list[torch.Tensor]

    def __init__(
        self,
        model: Any = None,
        *,
        metric: Any = None,
        reduction: str = "mean",
        as_loss: bool = False,
        **settings: Any,
    ) -> None:
        tm_kwargs = {k: settings.pop(k) for k in _TM_KWARGS if k in settings}
        super().__init__(**tm_kwargs)
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
        self.reduction = reduction
        self._metric = _build(model, metric, settings)
        self.functional = bool(getattr(self._metric, "is_differentiable", False))
        if as_loss and not self.functional:
            raise ConfigError(
                f"as_loss=True needs a differentiable metric; differentiable: {', '.join(differentiable_metrics())}"
            )
        self.as_loss = bool(as_loss)
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    @property
    def is_differentiable(self) -> bool:  # type: ignore[override]
        """True with ``as_loss=True`` (the batch score from ``forward`` keeps its graph), else False."""
        return bool(self.__dict__.get("as_loss", False))

    @property
    def higher_is_better(self) -> bool:  # type: ignore[override]
        """From the wrapped metric: True for similarities (DiffSim cosine), False for distances."""
        return bool(self._metric.higher_is_better)

    @property
    def similarity(self) -> Any:
        """The wrapped diffsim metric (for its config, embed/compare, maps...)."""
        return self._metric

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Score each pair (preds[i], target[i]); both (N, 3, H, W) float in [0, 1]."""
        self._check_inputs(preds, target)
        scores = self._scores(preds, target)
        self.scores.append(torch.as_tensor(scores).reshape(-1).detach().float().to(self.device))

    @staticmethod
    def _check_inputs(preds: torch.Tensor, target: torch.Tensor) -> None:
        for name, x in (("preds", preds), ("target", target)):
            if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != 3:
                raise ImageError(
                    f"{name} must be a tensor (N, 3, H, W); got "
                    f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}"
                )
        if preds.shape[0] != target.shape[0]:
            raise ImageError(
                f"preds and target must hold the same number of images; got {preds.shape[0]} and {target.shape[0]}"
            )

    def _scores(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.functional:
            return torch.as_tensor(self._metric.score(preds.detach(), target.detach()))
        if self.as_loss:
            return self._metric.differentiable_scores(preds, target)
        pair = []
        for name, x in (("preds", preds), ("target", target)):
            x = _int_to_unit(x.detach(), name)  # uint8 / uint16 / bool batches are scaled to [0, 1]
            _check_range(x, name)
            pair.append(x)
        with torch.no_grad():
            return self._metric.differentiable_scores(pair[0], pair[1])

    def forward(self, preds: torch.Tensor, target: torch.Tensor) -> Any:
        """This batch's score (accumulated too); with ``as_loss=True`` it keeps its autograd graph."""
        if not self.as_loss:
            return super().forward(preds, target)
        self._check_inputs(preds, target)
        scores = self._scores(preds, target).reshape(-1)
        self.scores.append(scores.detach().float().to(self.device))  # states never hold the graph
        self._update_count += 1
        self._computed = None
        return scores.mean() if self.reduction == "mean" else scores

    def compute(self) -> torch.Tensor:
        """The mean over all pairs (``reduction="mean"``) or every pair's score in update order ("none")."""
        if not self.scores:
            raise ConfigError("DiffSimScore.compute() called before any update()")
        all_scores = dim_zero_cat(self.scores)
        return all_scores.mean() if self.reduction == "mean" else all_scores


def _build(model: Any, metric: Any, settings: dict[str, Any]) -> Any:
    if metric is not None and not isinstance(metric, str):
        if model is not None or settings:
            raise ConfigError("pass settings when building a metric by name, not with a ready metric instance")
        return metric
    if isinstance(metric, str):
        from ..registry import create_metric

        if model is not None:
            settings["model"] = model
        return create_metric(metric, **settings)
    from ..metrics.diffsim_s import DiffSim

    if model is not None:
        settings["model"] = model
    return DiffSim.from_pretrained(**settings)
