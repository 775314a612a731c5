"""How an attention metric conditions its backbone: a text prompt (+ foreground masks) or a class label.

A conditioning strategy turns the metric's settings (and per-call options) into the backbone's
:data:`~diffsim.backbones.protocol.Condition`, says which ``embed`` options the metric takes, and
attaches what is not cached (masks) to fresh features. :class:`TextConditioning` serves SD, SDXL and
SD + IP-Adapter; :class:`ClassConditioning` serves DiT.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..backbones.protocol import ClassCondition, Condition, TextCondition
from ..features import Features
from ..images import ImageLike
from ..masks import MaskLike, load_masks, to_tokens
from .automask import AutoMasks, Prompts

if TYPE_CHECKING:
    from .attention import AttentionMetric

logger = logging.getLogger(__name__)


class Conditioning:
    """Base strategy: no per-call options, nothing attached after embedding."""

    accepts_prompt: ClassVar[bool] = False
    accepts_masks: ClassVar[bool] = False
    #: keyword options of ``embed`` besides the per-call settings
    embed_options: ClassVar[tuple[str, ...]] = ()

    def setup(self, metric: AttentionMetric) -> None:
        """Derive state from the settings and the backbone (e.g. a class id)."""

    def condition(self, metric: AttentionMetric, **call: Any) -> Condition:
        raise NotImplementedError

    def resolved(self, metric: AttentionMetric) -> dict[str, Any]:
        """Values resolved against the model that determine the features."""
        return {}

    def finish(self, metric: AttentionMetric, feats: Features, images: list[ImageLike], **options: Any) -> Features:
        return feats


class TextConditioning(Conditioning):
    """A prompt (the metric's, or per call) and foreground masks (``masks=``, ``masks="auto"``)."""

    accepts_prompt = True
    accepts_masks = True
    embed_options = ("masks", "mask_prompt")

    def __init__(self, **extras: str) -> None:
        #: TextCondition field -> metric setting (e.g. SDXL's size <- conditioning_size)
        self.extras = extras

    def setup(self, metric: AttentionMetric) -> None:
        s, m = metric.settings, metric
        m.automask = AutoMasks(s.mask_model, s.mask_prompt, m.device, m.dtype, s.auto_masks)

    def condition(self, metric: AttentionMetric, prompt: str | None = None, **call: Any) -> TextCondition:
        s = metric.settings
        values = {k: getattr(s, v) for k, v in self.extras.items()}
        if "ip_scale" in values:
            values["ip_scale"] = float(values["ip_scale"])
        return TextCondition(prompt or s.prompt, **values)

    def finish(
        self,
        metric: AttentionMetric,
        feats: Features,
        images: list[ImageLike],
        masks: MaskLike | Sequence[MaskLike] = None,
        mask_prompt: Prompts = None,
        **options: Any,
    ) -> Features:
        masks = metric.automask.resolve(masks, images, mask_prompt)
        if masks is None:
            if metric.settings.mask_keys and not getattr(metric, "_warned_no_masks", False):  # e.g. diffsim-s-fg
                logger.warning(
                    "%s: mask_keys=True but no masks were given: every token counts fully (plain "
                    'DiffSim-S); pass masks= or masks="auto" to weight the foreground',
                    metric.name,
                )
                metric._warned_no_masks = True
            return feats
        loaded = load_masks(masks, len(feats))
        tensors = dict(feats.tensors)
        for path in metric.layers:
            side = int(round(tensors[f"{path}/q"].shape[-2] ** 0.5))
            w = torch.stack([to_tokens(m, side, metric.crop) for m in loaded]).to(tensors[f"{path}/q"].device)
            tensors[f"{path}/mask"] = w
        return Features(tensors, feats.config, feats.names)


class ClassConditioning(Conditioning):
    """A class label (``class_label`` setting: an ImageNet id or a label name) against the null class."""

    def setup(self, metric: AttentionMetric) -> None:
        metric.class_id = metric.backbone.class_id(metric.settings.class_label)

    def condition(self, metric: AttentionMetric, **call: Any) -> ClassCondition:
        return ClassCondition(metric.class_id)

    def resolved(self, metric: AttentionMetric) -> dict[str, Any]:
        return {"class_id": metric.class_id}
