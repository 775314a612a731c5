"""The metric base: every metric is ``embed`` (per-image features, cacheable) + ``compare`` (cheap).

:class:`Metric` is the interface (``score``, ``matrix`` and the 2AFC ``decide`` are built on ``embed``
and ``compare``), with one frozen :class:`~diffsim.settings.Settings` object per instance as the single
source of its config, ``repr`` and ``with_settings``.

:class:`FeatureMetric` owns the embed protocol for metrics that run a network on images:
preprocess (a picklable step) -> content-hash lookup in the feature cache -> batched ``forward`` on
the misses only -> compatibility checks in ``compare``. Adding a metric is one small file:

1. a settings dataclass (fields with defaults and their roles: :func:`~diffsim.settings.load_field`,
   ``compare_field``, ``per_call_field``..., and ``validate``);
2. ``load_backbone(settings)`` (use :func:`diffsim.models.shared_model` so metrics share checkpoints);
3. ``preprocessor`` (a :mod:`diffsim.preprocess` step), ``forward(pixels) -> Features`` and
   ``compare(a, b)``; optionally ``compare_matrix``, ``setup`` (derived state) and ``resolved``;
4. one registry entry (:mod:`diffsim.registry`) and one row in the tests' tiny-override table.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import torch
from tqdm.auto import tqdm

from ..bounds import check_fits, is_out_of_memory, out_of_memory, path_like, positive_int
from ..cache import DEFAULT_MEMORY_BYTES, FeatureCache, config_key
from ..errors import ConfigError, ImageError
from ..features import Features
from ..images import ImageLike, ImagesLike, as_list, content_hash, describe, is_single
from ..settings import Settings, jsonable, load_field, runtime_field
from ..settings import Settings as AnySettings  # in the class bodies below, ``Settings`` is the ClassVar

logger = logging.getLogger(__name__)


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Metric(ABC):
    """A similarity (``higher_is_better``) or distance between images."""

    Settings: ClassVar[type[Settings]] = Settings
    default_name: ClassVar[str] = "metric"
    #: capabilities, declared: ``embed`` takes ``prompt=`` / ``masks=``; ``decide`` is a vote, not scores
    accepts_prompt: ClassVar[bool] = False
    accepts_masks: ClassVar[bool] = False
    votes: ClassVar[bool] = False
    #: ``differentiable_scores`` is implemented: the metric can be a training loss (``as_loss``)
    is_differentiable: ClassVar[bool] = False

    def __init__(self, settings: AnySettings | None = None, *, name: str | None = None) -> None:
        if settings is None:
            settings = self.Settings()
        if not isinstance(settings, self.Settings):
            raise ConfigError(f"{type(self).__name__} takes {self.Settings.__name__}; got {type(settings).__name__}")
        self.settings = settings
        self.name = name or self.default_name

    # ------------------------------------------------------------ description
    @property
    def higher_is_better(self) -> bool:
        """Polarity, from the settings (False for distances such as LPIPS or ``similarity="mse"``)."""
        return self.settings.higher_is_better

    def resolved(self) -> dict[str, Any]:
        """Values derived from the settings and the loaded model (shown in ``config``)."""
        return {}

    @property
    def config(self) -> dict[str, Any]:
        """Everything that determines the scores (shown in results; JSON-serialisable)."""
        values = {k: v for k, v in self.settings.to_dict().items() if k not in self.settings.runtime}
        return {"metric": self.name, **values, **jsonable(self.resolved()), "higher_is_better": self.higher_is_better}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.non_default().items())
        return f"{type(self).__name__}({self.name!r}{', ' + args if args else ''})"

    def settings_dict(self) -> dict[str, Any]:
        """Every setting by name, as given: ``create_metric(m.name, **m.settings_dict())`` rebuilds ``m``."""
        return self.settings.values()

    def with_settings(self, **changes: Any) -> Metric:
        """The same kind of metric with some settings changed (every other setting kept)."""
        return type(self)(self.settings.replace(self.name, **changes), name=self.name)

    # --------------------------------------------------------------- protocol
    @abstractmethod
    def embed(self, images: ImagesLike, progress: bool = False, **options: Any) -> Features:
        """Per-image features for a batch of images (paths, PIL, arrays or tensors in [0, 1])."""

    @abstractmethod
    def compare(self, a: Features, b: Features) -> torch.Tensor:
        """Scores of paired features, shape (N,); a batch of one broadcasts against the other."""

    def compare_matrix(self, a: Features, b: Features) -> torch.Tensor:
        """All-pairs scores (len(a), len(b)). Subclasses may vectorise this."""
        return torch.stack([self.compare(a[i], b) for i in range(len(a))])

    def decide(self, ref: Features, a: Features, b: Features) -> torch.Tensor:
        """2AFC decision per triplet: +1 if ``a`` is closer to ``ref``, -1 if ``b`` is, 0 on an exact tie.

        Polarity-aware (distances: lower is closer). Benchmarks call this rather than comparing
        scores themselves, so that voting metrics (``votes = True``) fit too.
        """
        sa, sb = self.compare(ref, a), self.compare(ref, b)
        d = torch.sign(sa - sb)
        return (d if self.higher_is_better else -d).to(torch.int8)

    def _embed_both(self, a: ImagesLike, b: ImagesLike, **options: Any) -> tuple[Features, Features]:
        la, lb = as_list(a), as_list(b)
        if not la or not lb:
            raise ImageError("no images given")
        feats = self.embed(la + lb, **options)  # one batch; repeated images are embedded once
        return feats[: len(la)], feats[len(la) :]

    def score(self, a: ImagesLike, b: ImagesLike, **options: Any) -> float | torch.Tensor:
        """Score of image ``a`` against ``b``: a float for two single images, else a tensor (N,).

        Batches pair up element by element; a single image broadcasts against a batch.
        """
        fa, fb = self._embed_both(a, b, **options)
        if len(fa) != len(fb) and 1 not in (len(fa), len(fb)):
            raise ImageError(
                f"cannot pair {len(fa)} images with {len(fb)}: give equal counts, or one image "
                "against many (use matrix() for all pairs)"
            )
        out = self.compare(fa, fb)
        return float(out[0]) if is_single(a) and is_single(b) else out

    def matrix(self, a: ImagesLike, b: ImagesLike | None = None, **options: Any) -> torch.Tensor:
        """All-pairs scores (N, M) between ``a`` and ``b`` (``b`` defaults to ``a``)."""
        if b is None:
            fa = self.embed(a, **options)
            return self.compare_matrix(fa, fa)
        fa, fb = self._embed_both(a, b, **options)
        return self.compare_matrix(fa, fb)

    def differentiable_scores(
        self, x: torch.Tensor, y: torch.Tensor, noise: Any = None, checkpoint: bool = False
    ) -> torch.Tensor:
        """Per-pair scores (N,) of image tensors (N, 3, H, W) in [0, 1], differentiable in ``x`` and ``y``
        (no cache, no Pillow; equal to ``score`` on pixels at the working size). Metrics that implement it
        set ``is_differentiable = True``. ``noise``: (eps_vae, eps) replacing a diffusion metric's seeded
        draw; ``checkpoint``: gradient checkpointing."""
        from ..registry import differentiable_metrics

        raise ConfigError(
            f"{self.name} has no differentiable path; differentiable: {', '.join(differentiable_metrics())}"
        )

    def as_loss(self, reduction: str = "mean", **options: Any) -> Any:
        """This metric as a differentiable loss module, :class:`diffsim.loss.DiffSimLoss` (``1 - score``
        for similarities, the distance for distances); ``options``: ``noise``, ``seed``, ``checkpoint``."""
        from ..loss import DiffSimLoss

        return DiffSimLoss(self, reduction=reduction, **options)


@dataclasses.dataclass(frozen=True)
class RunSettings(Settings):
    """Settings every network-backed metric has: how it runs, and its feature cache."""

    device: str | None = runtime_field(None, load=True)  # None: cuda if available, else cpu
    dtype: str | None = load_field(None)  # None: float16 on CUDA, float32 elsewhere
    batch_size: int = runtime_field(4)
    cache_dir: str | os.PathLike | None = runtime_field(None)  # on-disk feature cache (safetensors)
    cache_bytes: int = runtime_field(DEFAULT_MEMORY_BYTES)  # bound of the in-memory feature cache

    def validate(self) -> None:
        positive_int("batch_size", self.batch_size)
        if isinstance(self.cache_bytes, bool) or not isinstance(self.cache_bytes, int) or self.cache_bytes < 0:
            raise ConfigError(f"cache_bytes must be a non-negative integer; got {self.cache_bytes!r}")
        path_like("cache_dir", self.cache_dir)
        for name in ("device", "dtype"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, (str, torch.device, torch.dtype)):
                raise ConfigError(f"{name} must be a string; got {v!r}")
        from ..devices import resolve_device, resolve_dtype  # a device this machine lacks fails before loading

        dev = resolve_device(self.device) if self.device is not None else None
        if self.dtype is not None:
            resolve_dtype(self.dtype, dev or torch.device("cpu"))


@dataclasses.dataclass(frozen=True)
class FeatureSettings(RunSettings):
    """Run settings plus a model checkpoint (hub id or local path) and its revision."""

    model: str | os.PathLike | None = load_field(None)  # None: the metric's default model
    revision: str | None = load_field(None)

    def validate(self) -> None:
        super().validate()
        path_like("model", self.model)
        if self.revision is not None and not isinstance(self.revision, str):
            raise ConfigError(f"revision must be a string; got {self.revision!r}")


Preprocessor = Callable[[ImageLike, int], torch.Tensor]
FM = TypeVar("FM", bound="FeatureMetric")


class FeatureMetric(Metric):
    """A metric whose features come from a network: owns ``embed``, the cache and compatibility checks."""

    Settings: ClassVar[type[Settings]] = RunSettings
    settings: RunSettings
    #: the model used when ``settings.model`` is None
    default_model: ClassVar[str] = ""
    #: keyword options of ``embed`` besides the per-call settings (e.g. ``masks``)
    embed_options: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        settings: AnySettings | None = None,
        *,
        backbone: Any = None,
        cache: FeatureCache | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(settings, name=name)
        s = self.settings
        # the cache first: an unusable cache_dir fails before the model loads
        self.cache = cache if cache is not None else FeatureCache(s.cache_bytes, s.cache_dir)
        self.backbone = backbone if backbone is not None else self.load_backbone(s)
        self.setup()

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, **settings: Any) -> FeatureMetric:
        """Load the model (hub id or local path; shared with other metrics) and configure the metric."""
        if model is not None:
            settings["model"] = model
        return cls(cls.Settings.create(cls.default_name, **settings))

    @classmethod
    @abstractmethod
    def load_backbone(cls, settings: Any) -> Any:
        """Load (or reuse) the network these settings name."""

    def setup(self) -> None:
        """Derive state from the settings and the loaded backbone (validate what needs the model)."""

    def with_settings(self: FM, **changes: Any) -> FM:
        """Same class, every setting kept but ``changes``; shares the loaded model and the feature cache
        (a change of any load setting, e.g. model, variant or dtype, loads that model; of the cache settings,
        a new cache)."""
        new = self.settings.replace(self.name, **changes)
        same_model = new.load_dict() == self.settings.load_dict()
        same_cache = (new.cache_dir, new.cache_bytes) == (self.settings.cache_dir, self.settings.cache_bytes)
        return type(self)(
            new,
            backbone=self.backbone if same_model else None,
            cache=self.cache if same_cache else None,
            name=self.name,
        )

    @property
    def model_identity(self) -> str:
        """What identifies the loaded weights (in the feature-cache key)."""
        b = self.backbone
        return str(getattr(b, "identity", None) or getattr(b, "source", None) or getattr(self.settings, "model", ""))

    # --------------------------------------------------------------- features
    @property
    @abstractmethod
    def preprocessor(self) -> Preprocessor:
        """The picklable step ``(image, index) -> (3, S, S) tensor`` this metric feeds its network."""

    @abstractmethod
    def forward(self, pixels: torch.Tensor, *args: Any, **call: Any) -> Features:
        """Run the network on a stacked batch of preprocessed images; per-image features."""

    def feature_config(self, **call: Any) -> dict[str, Any]:
        """Everything that determines the features (its hash is the cache key); ``call``: per-call settings."""
        values = self.settings.feature_dict()
        values.update({k: jsonable(v) for k, v in call.items() if v is not None})
        values.update(model=self.model_identity, dtype=jsonable(self.dtype))
        return {"metric": self.feature_family, **values, **jsonable(self.feature_resolved())}

    @property
    def feature_family(self) -> str:
        """Metrics of one family compute identical features (and share cache entries)."""
        return self.default_name

    def feature_resolved(self) -> dict[str, Any]:
        """Derived values that determine the features (e.g. the actual timestep)."""
        return {}

    @property
    def dtype(self) -> torch.dtype:
        return getattr(self.backbone, "dtype", torch.float32)

    @property
    def device(self) -> torch.device:
        return getattr(self.backbone, "device", torch.device("cpu"))

    def _split_options(self, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        call = {k: v for k, v in options.items() if k in self.settings.per_call}
        rest = {k: v for k, v in options.items() if k not in call}
        unknown = [k for k in rest if k not in self.embed_options]
        if unknown:
            valid = sorted(self.settings.per_call) + list(self.embed_options) + ["progress"]
            raise ConfigError(
                f"{self.name}.embed() got unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
            )
        return call, rest

    def embed(self, images: ImagesLike, progress: bool = False, **options: Any) -> Features:
        """Features of each image; each distinct image runs the network once per feature config."""
        call, rest = self._split_options(options)
        items = as_list(images)
        if not items:
            raise ImageError("no images given")
        step = self.preprocessor
        pixels = [step(im, i) for i, im in enumerate(items)]
        feats = self.embed_pixels(pixels, [describe(im, i) for i, im in enumerate(items)], progress, **call)
        return self.finish(feats, items, **rest)

    def embed_pixels(
        self,
        pixels: Sequence[torch.Tensor] | torch.Tensor,
        names: Sequence[str] | None = None,
        progress: bool = False,
        **call: Any,
    ) -> Features:
        """Features of already preprocessed images (e.g. from DataLoader workers), through the cache."""
        pixels = list(pixels)
        if not pixels:
            raise ImageError("no images given")
        call, rest = self._split_options(call)
        if rest:
            raise ConfigError(f"embed_pixels() takes per-call settings only; got {', '.join(rest)}")
        fcfg = self.feature_config(**call)
        ckey = config_key(fcfg)
        keys = [content_hash(p) for p in pixels]
        found: dict[str, Features] = {}
        todo: dict[str, torch.Tensor] = {}
        for key, px in zip(keys, pixels, strict=False):
            if key in found or key in todo:
                continue
            hit = self.cache.get((ckey, key))
            if hit is not None:
                found[key] = hit.to(self.device)
            else:
                todo[key] = px
        if found:
            logger.debug(
                "%s: %d of %d distinct images served from the feature cache",
                self.name,
                len(found),
                len(found) + len(todo),
            )
        by_shape: dict[tuple[int, ...], list[tuple[str, torch.Tensor]]] = {}
        for item in todo.items():  # one batch holds one size (native-resolution steps keep each image's own)
            by_shape.setdefault(tuple(item[1].shape), []).append(item)
        batches = [b for group in by_shape.values() for b in _chunks(group, self.settings.batch_size)]
        if batches:  # an estimate first: a size that cannot fit is refused before the first allocation
            side = getattr(self.settings, "size", None) or int(pixels[0].shape[-1])  # packed inputs: the working size
            check_fits(int(side), len(batches[0]), self.device, self.dtype.itemsize)
        for batch in tqdm(batches, desc="embedding", unit="batch", disable=not progress or not batches):
            try:
                feats = self.forward(torch.stack([px for _, px in batch]), **call)
            except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError is a RuntimeError
                if not is_out_of_memory(exc):
                    raise
                raise out_of_memory(exc) from exc
            for i, (key, _) in enumerate(batch):
                one = Features({k: v[i : i + 1].clone() for k, v in feats.tensors.items()}, fcfg)  # own storage
                self.cache.put((ckey, key), one)
                found[key] = one
        out = Features.cat([found[k] for k in keys])
        return Features(out.tensors, dict(fcfg), list(names) if names is not None else [])

    def finish(self, feats: Features, images: list[ImageLike], *args: Any, **options: Any) -> Features:
        """Attach what is not cached (e.g. foreground masks) to freshly embedded features."""
        return feats

    def pool(self, feats: Features) -> torch.Tensor:
        """One L2-normalised vector per image (N, D) for approximate search: token-averaged features."""
        parts = []
        for t in feats.tensors.values():
            x = t.float()
            x = x.mean(dim=-2) if x.dim() >= 3 else x
            parts.append(x.reshape(x.shape[0], -1))
        return torch.nn.functional.normalize(torch.cat(parts, dim=1), dim=1)

    # --------------------------------------------------------- compatibility
    def check_pair(self, a: Features, b: Features) -> None:
        """Both feature sets must come from this metric's feature settings (per-call settings may differ)."""
        skip = self.settings.per_call
        mine = {k: v for k, v in self.feature_config().items() if k not in skip}
        for side, f in (("first", a), ("second", b)):
            theirs = {k: v for k, v in dict(f.config).items() if k not in skip}
            if theirs != mine:
                diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
                raise ConfigError(
                    f"the {side} features were computed with other settings than this {self.name} "
                    f"metric ({', '.join(diff)}); embed both sides with this metric"
                )
