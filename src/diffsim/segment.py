"""Automatic foreground masks from a text-prompted segmentation model (CLIPSeg through transformers).

``ForegroundSegmenter.from_pretrained()`` loads ``CIDAS/clipseg-rd64-refined`` (or a local folder written
by ``save_pretrained`` with the model and its ``CLIPSegProcessor``); ``segment(images, prompts)`` returns
one float mask (H, W) in [0, 1] per image, at the image's own resolution: the sigmoid of CLIPSeg's
logits, resized back with bilinear interpolation. Images are resized to the processor's size
(352 x 352 for the hub model; bilinear, antialiased, aspect ratio not kept) and normalised with its
mean/std in torch, so float tensors are not quantised. Loaded models are shared between every user of
the same checkpoint, device and dtype.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .devices import dtype_name, resolve_device, resolve_dtype
from .errors import ConfigError, ImageError
from .images import ImagesLike, _load_item, as_list
from .models import shared_model

logger = logging.getLogger(__name__)

DEFAULT_SEGMENTER = "CIDAS/clipseg-rd64-refined"
DEFAULT_MASK_PROMPT = "the main object"


def _load(model: str, dtype: torch.dtype, revision: str | None) -> tuple[Any, Any]:
    """CLIPSeg model and processor from a local folder or the hub (cache first); clear errors."""
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    from .backbones.loading import load_cache_first, resolve_source

    src, local = resolve_source(
        model, "segmentation model", f"the CLIPSeg model and its CLIPSegProcessor; hub id e.g. {DEFAULT_SEGMENTER}"
    )
    kw: dict[str, Any] = {"revision": revision} if revision else {}

    def attempt(**extra: Any) -> tuple[Any, Any]:
        net = CLIPSegForImageSegmentation.from_pretrained(src, torch_dtype=dtype, **kw, **extra)
        proc = CLIPSegProcessor.from_pretrained(src, **kw, **extra)
        return net, proc

    return load_cache_first(
        attempt,
        src,
        local,
        "segmentation model",
        "mask_model='/path/to/folder' (CLIPSegForImageSegmentation and CLIPSegProcessor saved with save_pretrained)",
        " (expected a CLIPSeg model and its processor, both saved with save_pretrained)",
        cli_fix="--set mask_model=/path/to/folder (CLIPSegForImageSegmentation and "
        "CLIPSegProcessor saved with save_pretrained)",
    )


def _processor_geometry(proc: Any) -> tuple[tuple[int, int], tuple[float, ...], tuple[float, ...]]:
    """(height, width), mean and std of the processor's image preprocessing."""
    ip = proc.image_processor
    size = getattr(ip, "size", None)

    def get(key: str) -> Any:
        return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

    if isinstance(size, int):
        hw = (size, size)
    elif size is not None and get("height") and get("width"):
        hw = (int(get("height")), int(get("width")))
    else:
        edge = int((get("shortest_edge") if size is not None else None) or 352)
        hw = (edge, edge)
    if getattr(ip, "do_normalize", True):
        mean, std = tuple(ip.image_mean), tuple(ip.image_std)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return hw, mean, std


def _unit(image: Any, index: int) -> torch.Tensor:
    """One image (path, PIL, array, tensor in [0, 1]) as a (3, H, W) float tensor at its own resolution."""
    item = _load_item(image, index)
    if isinstance(item, Image.Image):
        return torch.from_numpy(np.asarray(item.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    return item.float()


class ForegroundSegmenter:
    """Text-prompted foreground masks from CLIPSeg; build with :meth:`from_pretrained`."""

    def __init__(
        self, model: Any, processor: Any, source: str, device: torch.device, dtype: torch.dtype, batch_size: int = 8
    ) -> None:
        self.model = model.to(device=device).eval().requires_grad_(False)
        self.processor = processor
        self.source = source
        self.device = device
        self.dtype = dtype
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}")
        self.batch_size = batch_size
        self.size, mean, std = _processor_geometry(processor)
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.forward_calls = 0

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike = DEFAULT_SEGMENTER,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        revision: str | None = None,
        share: bool = True,
    ) -> ForegroundSegmenter:
        """Load (or reuse, with ``share=True``) a CLIPSeg checkpoint: hub id or local save_pretrained folder."""
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        key = ("segmenter", str(model), str(dev), str(dt), revision)

        def load() -> ForegroundSegmenter:
            logger.info("loading segmentation model %s on %s (%s)", model, dev, dt)
            net, proc = _load(str(model), dt, revision)
            return cls(net, proc, str(model), dev, dt)

        return shared_model(key, load, share)

    def __repr__(self) -> str:
        return f"ForegroundSegmenter(model={self.source!r}, device={self.device}, dtype={dtype_name(self.dtype)})"

    @torch.no_grad()
    def segment(self, images: ImagesLike, prompts: str | Sequence[str] | None = None) -> list[torch.Tensor]:
        """One float mask (H, W) in [0, 1] per image (CPU float32), at each image's own resolution.

        ``prompts``: one text for every image (default :data:`DEFAULT_MASK_PROMPT`) or one per image
        (e.g. each image's category name).
        """
        items = as_list(images)
        if not items:
            raise ImageError("no images given")
        texts = self._prompts(prompts, len(items))
        units = [_unit(im, i) for i, im in enumerate(items)]
        out: list[torch.Tensor] = []
        for s in range(0, len(units), self.batch_size):
            out.extend(self._run(units[s : s + self.batch_size], texts[s : s + self.batch_size]))
        return out

    @staticmethod
    def _prompts(prompts: str | Sequence[str] | None, n: int) -> list[str]:
        if prompts is None:
            return [DEFAULT_MASK_PROMPT] * n
        if isinstance(prompts, str):
            return [prompts] * n
        texts = list(prompts)
        if len(texts) != n or not all(isinstance(t, str) for t in texts):
            raise ConfigError(
                f"mask prompts must be one string or one string per image; got {len(texts)} for {n} images"
            )
        return texts

    def _run(self, units: list[torch.Tensor], texts: list[str]) -> list[torch.Tensor]:
        pixels = torch.stack(
            [
                F.interpolate(
                    u[None].to(self.device), size=self.size, mode="bilinear", align_corners=False, antialias=True
                )[0]
                for u in units
            ]
        )
        pixels = ((pixels.clamp(0, 1) - self.mean) / self.std).to(self.dtype)
        tok = self.processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        logits = self.model(
            input_ids=tok["input_ids"].to(self.device),
            attention_mask=tok["attention_mask"].to(self.device),
            pixel_values=pixels,
        ).logits
        self.forward_calls += 1
        probs = torch.sigmoid(logits.float().reshape(len(units), 1, *logits.shape[-2:]))
        masks = []
        for p, u in zip(probs, units, strict=False):
            hw = tuple(u.shape[-2:])
            if hw != tuple(p.shape[-2:]):  # antialiased when shrinking; plain bilinear when enlarging
                p = F.interpolate(p[None], size=hw, mode="bilinear", align_corners=False, antialias=True)[0]
            masks.append(p[0].clamp(0.0, 1.0).cpu())
        return masks


__all__ = ["DEFAULT_MASK_PROMPT", "DEFAULT_SEGMENTER", "ForegroundSegmenter"]
