"""What the demo computes, without any UI: pair scores and maps, rankings and 2AFC decisions.

Everything goes through the metric's public API (``with_settings``, ``embed``, ``compare``,
``token_maps``, ``decide``): the settings variants share the loaded model and the feature cache, and
the Stable Diffusion backbone keeps each image's clean latents, so changing the layer or the step runs
the U-Net again but never the VAE. Scores equal ``DiffSim.score`` with the same settings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from ..errors import ConfigError, DiffSimError, ImageError
from ..features import Features
from ..images import ImageLike, describe, to_unit_tensor
from ..viz.maps import layer_names

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairResult:
    score: float
    map_a: torch.Tensor
    map_b: torch.Tensor
    overlay_a: Image.Image
    overlay_b: Image.Image
    vmin: float
    vmax: float
    layer: str
    step: int | None


@dataclass(frozen=True)
class Ranked:
    rank: int
    name: str
    source: ImageLike
    score: float


@dataclass(frozen=True)
class Choice:
    score_a: float
    score_b: float
    closer: str  # "A", "B" or "tie"
    margin: float  # |score_a - score_b|
    higher_is_better: bool


class Engine:
    """The demo's computations on a loaded DiffSim-S metric (its model, prompt, seed, size and crop)."""

    def __init__(self, metric: Any) -> None:
        if not all(hasattr(metric, a) for a in ("backbone", "with_settings", "token_maps")):
            raise ConfigError(
                f"the demo needs a DiffSim-S metric (per-token maps); got "
                f"{getattr(metric, 'name', type(metric).__name__)!r}"
            )
        self.metric = metric
        self._variants: dict[tuple[str, int], Any] = {}
        self.lock = threading.Lock()  # one computation at a time (the caches and the model are shared)
        cfg = metric.config
        aliases = [a for a in metric.backbone.aliases() if not a.endswith(".cross")]
        own = [n for n in layer_names(cfg) if n not in aliases]
        self.layers = aliases + own
        self.default_layer = layer_names(cfg)[0]
        self.max_step = len(metric.backbone.step_table()) - 1
        self.default_step = int(cfg["step"]) if cfg.get("step") is not None else 500

    def check(self, image: ImageLike | None, what: str, index: int = 0) -> ImageLike:
        """Validate one input before any model runs (ImageError naming ``what``)."""
        if image is None or (isinstance(image, str) and not image):
            raise ImageError(f"{what}: no image uploaded")
        cfg = self.metric.config
        try:
            to_unit_tensor(image, cfg["size"], cfg["crop"], index)
        except ImageError as exc:
            raise ImageError(f"{what}: {exc}") from None
        return image

    def settings(self, layer: str | None, step: int | None) -> Any:
        """The metric for one (layer, step): same model, caches, prompt, seed and size."""
        layer = layer or self.default_layer
        step = self.default_step if step is None else int(step)
        if not 0 <= step <= self.max_step:
            raise ConfigError(f"step must be between 0 and {self.max_step}; got {step}")
        key = (layer, step)
        if key not in self._variants:
            self._variants[key] = self.metric.with_settings(layer=layer, step=step, timestep=None)
        return self._variants[key]

    def pair(
        self,
        a: ImageLike | None,
        b: ImageLike | None,
        layer: str | None = None,
        step: int | None = None,
        alpha: float = 0.5,
    ) -> PairResult:
        """Score of A against B and both images with their token maps overlaid (shared colour range)."""
        from ..viz.maps import map_range, overlay_pil

        a, b = self.check(a, "image A", 0), self.check(b, "image B", 1)
        m = self.settings(layer, step)
        both = m.embed([a, b])
        fa, fb = both[0:1], both[1:2]
        score = float(m.compare(fa, fb)[0])
        ma, mb = (x[0] for x in m.token_maps(fa, fb))
        lo, hi = map_range([ma, mb])
        crop = m.config["crop"]
        return PairResult(
            score,
            ma,
            mb,
            overlay_pil(a, ma, lo, hi, crop, alpha, 0),
            overlay_pil(b, mb, lo, hi, crop, alpha, 1),
            lo,
            hi,
            layer_names(m.config)[0],
            m.config.get("step"),
        )

    def rank(
        self,
        reference: ImageLike | None,
        candidates: Sequence[ImageLike] | None,
        layer: str | None = None,
        step: int | None = None,
    ) -> tuple[list[Ranked], list[str]]:
        """Candidates sorted from most to least similar to the reference; plus one message per skipped file."""
        ref = self.check(reference, "reference")
        if not candidates:
            raise ImageError("candidates: no images uploaded")
        good, skipped = [], []
        for i, c in enumerate(candidates):
            try:
                good.append(self.check(c, f"candidate {i + 1}", i))
            except DiffSimError as exc:
                skipped.append(str(exc))
        if not good:
            raise ImageError("no readable candidate images: " + "; ".join(skipped))
        m = self.settings(layer, step)
        feats = m.embed([ref, *good])
        scores = m.compare(feats[0:1], feats[1:]).tolist()
        order = sorted(range(len(good)), key=lambda i: scores[i], reverse=bool(m.higher_is_better))
        return [Ranked(r + 1, describe(good[i], i), good[i], float(scores[i])) for r, i in enumerate(order)], skipped

    def twoafc(
        self,
        reference: ImageLike | None,
        a: ImageLike | None,
        b: ImageLike | None,
        layer: str | None = None,
        step: int | None = None,
    ) -> Choice:
        """Which candidate is closer to the reference (polarity-aware), and by how much."""
        ref = self.check(reference, "reference")
        a, b = self.check(a, "candidate A", 1), self.check(b, "candidate B", 2)
        m = self.settings(layer, step)
        feats: Features = m.embed([ref, a, b])
        fr, fa, fb = feats[0:1], feats[1:2], feats[2:3]
        sa, sb = float(m.compare(fr, fa)[0]), float(m.compare(fr, fb)[0])
        closer = {1: "A", -1: "B", 0: "tie"}[int(m.decide(fr, fa, fb)[0])]
        return Choice(sa, sb, closer, abs(sa - sb), bool(m.higher_is_better))
