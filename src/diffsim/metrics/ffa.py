"""FFA (foreground feature averaging, the CUTE paper's baseline): masked mean of DINOv2 patch tokens.

Default backbone ``facebook/dinov2-base`` at 336 px (24 x 24 patches), ImageNet mean/std, as the
authors (who use the torch-hub ViT-B/14 and carvekit background removal). Masks are given by the
user — ``embed(images, masks=[...])`` or ``score(a, b, masks=[mask_a, mask_b])`` — as files, arrays or
tensors (see :mod:`diffsim.masks`); they are averaged onto the patch grid and binarised at 0.5, like
the authors. An image without a mask (or with an empty one) uses all patches, with a logged warning.
``masks="auto"`` (or ``auto_masks=True`` when building the metric) takes the masks from a text-prompted
segmentation model instead (CLIPSeg, ``mask_model`` / ``mask_prompt``; see :mod:`diffsim.segment`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import torch

from ..bounds import path_like
from ..features import Features
from ..images import ImageLike, ImagesLike
from ..masks import MaskLike, load_masks, to_tokens
from ..segment import DEFAULT_MASK_PROMPT, DEFAULT_SEGMENTER
from ..settings import compare_field
from .automask import AutoMasks, Prompts
from .cosine import VectorCosine
from .vit import ViTMetric, ViTSettings

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FFASettings(ViTSettings):
    size: int = 336
    mask_model: str | os.PathLike = compare_field(DEFAULT_SEGMENTER)
    mask_prompt: str | tuple[str, ...] = compare_field(DEFAULT_MASK_PROMPT)
    auto_masks: bool = compare_field(False)

    def normalise(self) -> None:
        if isinstance(self.mask_prompt, list):
            self._set("mask_prompt", tuple(self.mask_prompt))
        self._set("auto_masks", bool(self.auto_masks))

    def validate(self) -> None:
        super().validate()
        path_like("mask_model", self.mask_model, optional=False)


class FFA(VectorCosine, ViTMetric):
    """Cosine of foreground-averaged DINOv2 patch features; higher is more similar."""

    Settings = FFASettings
    settings: FFASettings
    default_name = "ffa"
    family = "dinov2"
    default_model = "facebook/dinov2-base"
    accepts_masks = True
    embed_options = ("masks", "mask_prompt")

    @property
    def resize(self) -> int:
        return self.settings.resize if self.settings.resize is not None else self.settings.size

    def setup(self) -> None:
        s = self.settings
        self.automask = AutoMasks(s.mask_model, s.mask_prompt, self.device, self.dtype, s.auto_masks)

    def forward(self, pixels: torch.Tensor) -> Features:
        return Features({"patches": self.backbone.patch_tokens(pixels)})

    def embed(
        self,
        images: ImagesLike,
        progress: bool = False,
        masks: MaskLike | Sequence[MaskLike] = None,
        mask_prompt: Prompts = None,
        **options: Any,
    ) -> Features:
        """Patch tokens (cached) and each image's foreground-averaged feature.

        ``masks``: one per image (None entries allowed), or ``"auto"`` for the segmentation model's masks
        (prompted with ``mask_prompt``, one text or one per image; default: the metric's ``mask_prompt``).
        """
        return super().embed(images, progress, masks=masks, mask_prompt=mask_prompt, **options)

    def finish(
        self,
        feats: Features,
        images: list[ImageLike],
        masks: MaskLike | Sequence[MaskLike] = None,
        mask_prompt: Prompts = None,
    ) -> Features:
        masks = self.automask.resolve(masks, images, mask_prompt)
        p = feats.tensors["patches"]
        side = int(round(p.shape[1] ** 0.5))
        weights = []
        for i, m in enumerate(load_masks(masks, len(feats))):
            # the mask follows the image geometry: shortest side resized, centred square crop
            w = (to_tokens(m, side, "center") > 0.5).float() if m is not None else torch.zeros(side * side)
            if w.sum() == 0:
                logger.warning(
                    "%s: %s; averaging over all patches",
                    feats.names[i],
                    "no foreground mask given" if m is None else "empty foreground mask",
                )
                w = torch.ones(side * side)
            weights.append(w)
        w = torch.stack(weights).to(p.device)
        avg = (p.float() * w[..., None]).sum(1) / w.sum(1, keepdim=True)
        return Features({"patches": p, "mask": w, "foreground": avg}, feats.config, feats.names)

    def vector(self, feats: Features) -> torch.Tensor:
        return feats.tensors["foreground"]
