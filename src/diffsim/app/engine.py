"""What the demo computes, without any UI: pair scores and maps, rankings and 2AFC decisions.

Each uploaded image is VAE-encoded once (clean latents cached by content hash); changing the layer or
the step runs only the U-Net from those latents, and features are cached per (image, layer, timestep).
Scores equal ``DiffSim.score`` with the same settings.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from ..errors import ConfigError, DiffSimError, ImageError
from ..features import Features
from ..images import ImageLike, content_hash, describe, to_unit_tensor

logger = logging.getLogger(__name__)


class _LRU(OrderedDict):
    """A small least-recently-used dictionary."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_lru(self, key: Hashable) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None

    def put(self, key: Hashable, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass(frozen=True)
class Loaded:
    """An input image validated and preprocessed: its name, pixels in [0, 1] and content hash."""

    name: str
    source: ImageLike
    pixels: torch.Tensor
    key: str


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
    step: int


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
    """The demo's computations on a loaded DiffSim-S metric (the metric's prompt, seed, size and crop)."""

    def __init__(self, metric: Any, max_images: int = 256, max_features: int = 512) -> None:
        if not all(hasattr(metric, a) for a in ("backbone", "with_settings", "token_maps")):
            raise ConfigError(f"the demo needs a DiffSim-S metric (per-token maps); got "
                              f"{getattr(metric, 'name', type(metric).__name__)!r}")
        self.metric = metric
        self.latents = _LRU(max_images)
        self.features = _LRU(max_features)
        self._metrics: dict[tuple[str, int], Any] = {}
        self.encoded = 0  # images sent through the VAE
        self.lock = threading.Lock()  # one computation at a time (the caches and the model are shared)
        cfg = metric.config
        aliases = [a for a in metric.backbone.aliases() if not a.endswith(".cross")]
        own = [str(n) for n in cfg["layer_names"] if str(n) not in aliases]
        self.layers = aliases + own
        self.default_layer = str(cfg["layer_names"][0])
        self.max_step = len(metric.backbone.step_table()) - 1
        self.default_step = cfg["step"] if cfg.get("step") is not None else 500

    # ------------------------------------------------------------ internals
    def load(self, image: ImageLike | None, what: str, index: int = 0) -> Loaded:
        """Validate one input (raises ImageError with ``what`` in the message)."""
        if image is None or (isinstance(image, str) and not image):
            raise ImageError(f"{what}: no image uploaded")
        cfg = self.metric.config
        try:
            px = to_unit_tensor(image, cfg["size"], cfg["crop"], index)
        except ImageError as exc:
            raise ImageError(f"{what}: {exc}") from None
        return Loaded(describe(image, index), image, px, content_hash(px))

    def settings(self, layer: str | None, step: int | None) -> Any:
        """The metric for one (layer, step): same model, prompt, seed and size."""
        layer = layer or self.default_layer
        step = self.default_step if step is None else int(step)
        if not 0 <= step <= self.max_step:
            raise ConfigError(f"step must be between 0 and {self.max_step}; got {step}")
        key = (layer, step)
        if key not in self._metrics:
            self._metrics[key] = self.metric.with_settings(layer=layer, step=step)
        return self._metrics[key]

    def _z0(self, items: Sequence[Loaded]) -> torch.Tensor:
        todo = {it.key: it for it in items if self.latents.get_lru(it.key) is None}
        if todo:
            m = self.metric
            px = torch.stack([it.pixels for it in todo.values()]) * 2.0 - 1.0
            z = m.backbone.encode(px, m.config["seed"]).cpu()
            self.encoded += len(todo)
            for key, zi in zip(todo, z):
                self.latents.put(key, zi)
        return torch.stack([self.latents[it.key] for it in items])

    def embed(self, items: Sequence[Loaded], m: Any) -> Features:
        """Features of ``items`` for metric ``m``, from cached latents (equal to ``m.embed``)."""
        fcfg = m.feature_config()
        (path,) = m.layers
        cache_key = lambda it: (it.key, path, m.timestep)  # noqa: E731
        todo = list({it.key: it for it in items if self.features.get_lru(cache_key(it)) is None}.values())
        if todo:
            z0 = self._z0(todo).to(m.backbone.device)
            qkv = m.backbone.extract_latents(z0, m.layers, m.timestep, fcfg["prompt"], fcfg["seed"],
                                             single_branch=m.single_branch)[path]
            for i, it in enumerate(todo):
                t = {f"{path}/q": qkv.q[i:i + 1].clone(), f"{path}/k": qkv.k[i:i + 1].clone(),
                     f"{path}/v": qkv.v[i:i + 1].clone()}
                self.features.put(cache_key(it), Features(t, fcfg))
        out = Features.cat([self.features[cache_key(it)] for it in items])
        return Features(out.tensors, dict(fcfg), [it.name for it in items])

    # ------------------------------------------------------------- features
    def pair(self, a: ImageLike | None, b: ImageLike | None, layer: str | None = None, step: int | None = None,
             alpha: float = 0.5) -> PairResult:
        """Score of A against B and both images with their token maps overlaid (shared colour range)."""
        from ..viz.maps import map_range, overlay_pil

        la, lb = self.load(a, "image A", 0), self.load(b, "image B", 1)
        m = self.settings(layer, step)
        both = self.embed([la, lb], m)
        fa, fb = both[0:1], both[1:2]
        score = float(m.compare(fa, fb)[0])
        ma, mb = (x[0] for x in m.token_maps(fa, fb))
        lo, hi = map_range([ma, mb])
        crop = m.config["crop"]
        return PairResult(score, ma, mb, overlay_pil(a, ma, lo, hi, crop, alpha, 0),
                          overlay_pil(b, mb, lo, hi, crop, alpha, 1), lo, hi, str(layer or self.default_layer),
                          int(m.config["step"]))

    def rank(self, reference: ImageLike | None, candidates: Sequence[ImageLike] | None, layer: str | None = None,
             step: int | None = None) -> tuple[list[Ranked], list[str]]:
        """Candidates sorted from most to least similar to the reference; plus one message per skipped file."""
        ref = self.load(reference, "reference")
        if not candidates:
            raise ImageError("candidates: no images uploaded")
        items, skipped = [], []
        for i, c in enumerate(candidates):
            try:
                items.append(self.load(c, f"candidate {i + 1}", i))
            except DiffSimError as exc:
                skipped.append(str(exc))
        if not items:
            raise ImageError("no readable candidate images: " + "; ".join(skipped))
        m = self.settings(layer, step)
        scores = m.compare(self.embed([ref], m), self.embed(items, m)).tolist()
        order = sorted(range(len(items)), key=lambda i: scores[i], reverse=bool(m.higher_is_better))
        return [Ranked(r + 1, items[i].name, items[i].source, float(scores[i])) for r, i in enumerate(order)], skipped

    def twoafc(self, reference: ImageLike | None, a: ImageLike | None, b: ImageLike | None,
               layer: str | None = None, step: int | None = None) -> Choice:
        """Which candidate is closer to the reference (polarity-aware), and by how much."""
        ref = self.load(reference, "reference")
        la, lb = self.load(a, "candidate A", 1), self.load(b, "candidate B", 2)
        m = self.settings(layer, step)
        fr, fc = self.embed([ref], m), self.embed([la, lb], m)
        sa, sb = (float(x) for x in m.compare(fr, fc))
        decision = int(m.decide(fr, fc[0:1], fc[1:2])[0])
        closer = {1: "A", -1: "B", 0: "tie"}[decision]
        return Choice(sa, sb, closer, abs(sa - sb), bool(m.higher_is_better))
