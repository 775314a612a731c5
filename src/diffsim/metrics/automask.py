"""``masks="auto"`` for the masked metrics (FFA, DiffSim-S): foreground masks from a segmentation model.

A metric holds one :class:`AutoMasks` (which checkpoint, which prompt, on the metric's device/dtype). The
segmenter is loaded on first use only, so metrics that never ask for automatic masks never load it.
``masks="auto"`` segments every image; a list may mix explicit masks, ``None`` and ``"auto"`` entries.
With ``enabled=True`` (the metric's ``auto_masks=True``) a call without masks behaves like ``"auto"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ConfigError
from ..images import ImagesLike, as_list
from ..masks import MaskLike
from ..segment import DEFAULT_MASK_PROMPT, DEFAULT_SEGMENTER, ForegroundSegmenter

AUTO = "auto"
Prompts = str | Sequence[str] | None


def is_auto(mask: Any) -> bool:
    """True for the string ``"auto"`` (not a path: a mask file must not be called ``auto``)."""
    return isinstance(mask, str) and mask == AUTO


class AutoMasks:
    """Settings and lazy segmenter behind a metric's automatic foreground masks."""

    def __init__(
        self,
        model: str | os.PathLike = DEFAULT_SEGMENTER,
        prompt: Prompts = DEFAULT_MASK_PROMPT,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        enabled: bool = False,
    ) -> None:
        if not isinstance(model, (str, os.PathLike)):
            raise ConfigError(f"mask_model must be a hub id or a local folder; got {type(model).__name__}")
        self.model = str(model)
        self.prompt = self._check_prompt(prompt if prompt is not None else DEFAULT_MASK_PROMPT)
        self.device, self.dtype = device, dtype
        self.enabled = bool(enabled)
        self._segmenter: ForegroundSegmenter | None = None

    @staticmethod
    def _check_prompt(prompt: Prompts) -> str | list[str]:
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, Sequence) and all(isinstance(p, str) for p in prompt):
            return list(prompt)
        raise ConfigError(f"mask_prompt must be a string or a list of strings (one per image); got {prompt!r}")

    @property
    def segmenter(self) -> ForegroundSegmenter:
        """The (shared) segmentation model, loaded on first use."""
        if self._segmenter is None:
            self._segmenter = ForegroundSegmenter.from_pretrained(self.model, device=self.device, dtype=self.dtype)
        return self._segmenter

    def describe(self) -> dict[str, Any]:
        """Mask settings for a metric's config (only when automatic masks are the default)."""
        return {"auto_masks": True, "mask_model": self.model, "mask_prompt": self.prompt} if self.enabled else {}

    def resolve(
        self, masks: MaskLike | Sequence[MaskLike], images: ImagesLike, prompt: Prompts = None
    ) -> MaskLike | Sequence[MaskLike]:
        """``masks`` with every ``"auto"`` (whole or per entry) replaced by the segmenter's masks."""
        if masks is None and self.enabled:
            masks = AUTO
        whole = is_auto(masks)
        if not whole and (
            masks is None
            or isinstance(masks, (str, os.PathLike, torch.Tensor))
            or not isinstance(masks, Sequence)
            or not any(is_auto(m) for m in masks)
        ):
            return masks
        items = as_list(images)
        prompts = self._check_prompt(prompt if prompt is not None else self.prompt)
        if isinstance(prompts, list) and len(prompts) != len(items):
            raise ConfigError(
                f"got {len(prompts)} mask prompts for {len(items)} images: give one prompt, or one "
                "per image (for score(a, b): the images of a, then those of b)"
            )
        if whole:
            return self.segmenter.segment(items, prompts)
        entries = list(masks)  # type: ignore[arg-type]
        todo = [i for i, m in enumerate(entries) if is_auto(m)]
        if len(entries) != len(items):
            return entries  # load_masks reports the count mismatch
        sub = prompts if isinstance(prompts, str) else [prompts[i] for i in todo]
        for i, m in zip(todo, self.segmenter.segment([items[i] for i in todo], sub), strict=False):
            entries[i] = m
        return entries


__all__ = ["AUTO", "AutoMasks", "is_auto"]
