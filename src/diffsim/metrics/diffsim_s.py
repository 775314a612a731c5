"""DiffSim-S: the Aligned Attention Score in a self-attention layer of a Stable Diffusion U-Net."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from .. import aas
from ..aas import QKV
from ..backbones.detect import SD, SDXL, detect_kind, require_kind
from ..backbones.loading import DEFAULT_MODEL
from ..backbones.select import load_unet_backbone
from ..backbones.stable_diffusion import StableDiffusionBackbone, compile_mode
from ..bounds import MIN_LATENT_SIZE, check_seed
from ..defaults import DEFAULT_LAYER, DEFAULT_PROMPT, DEFAULT_SEED, DEFAULT_STEP  # re-exported (no torch there)
from ..devices import resolve_dtype
from ..errors import ConfigError, LayerError
from ..features import Features
from ..images import ImageLike, ImagesLike, check_crop, check_size
from ..masks import MaskLike, load_masks, to_tokens
from ..preprocess import Resize
from ..segment import DEFAULT_MASK_PROMPT, DEFAULT_SEGMENTER
from ..settings import one_of, path_like
from .automask import AutoMasks, Prompts
from .base import FeatureMetric, FeatureSettings

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DiffSimSettings(FeatureSettings):
    """Settings of DiffSim-S (and of the metrics that share its features)."""

    model: str | os.PathLike | None = DEFAULT_MODEL
    layer: str | tuple[str, ...] = DEFAULT_LAYER  # alias or module path, or several (one U-Net pass)
    timestep: int | None = None  # the actual DDPM timestep T
    step: int | None = None  # the paper's index K (T = scheduler.timesteps[K]); neither given: step 500
    prompt: str = DEFAULT_PROMPT
    size: int = 512
    seed: int = DEFAULT_SEED
    single_branch: bool = False  # the prompt branch only (half the U-Net cost)
    similarity: str = "cosine"  # or "mse" (a distance)
    crop: str = "none"  # or "center"
    variant: str | None = None
    single_file_config: str | None = None
    mask_keys: bool = False  # with masks: attention reads foreground keys only
    mask_model: str | os.PathLike = DEFAULT_SEGMENTER  # segmentation model behind masks="auto"
    mask_prompt: str | tuple[str, ...] = DEFAULT_MASK_PROMPT
    auto_masks: bool = False  # "auto" masks by default
    compile: bool | str = False  # torch.compile the truncated U-Net and VAE (or a mode, "reduce-overhead")
    channels_last: bool = False  # U-Net memory format
    inference_mode: bool = False  # torch.inference_mode for the passes
    compare_dtype: str | None = None  # attention products of compare in float16/bfloat16 (GPU); None: float32

    compare_only: ClassVar[frozenset[str]] = frozenset(
        {"similarity", "mask_keys", "mask_model", "mask_prompt", "auto_masks", "compare_dtype"}
    )
    runtime: ClassVar[frozenset[str]] = FeatureSettings.runtime | {"compile", "channels_last", "inference_mode"}
    load_fields: ClassVar[tuple[str, ...]] = FeatureSettings.load_fields + (
        "compile",
        "channels_last",
        "inference_mode",
    )
    per_call: ClassVar[frozenset[str]] = frozenset({"prompt"})
    exclusive: ClassVar[tuple[frozenset[str], ...]] = (frozenset({"timestep", "step"}),)
    #: resolved against the model (module paths, actual T) before they enter the feature config
    resolved_by_model: ClassVar[frozenset[str]] = frozenset({"layer", "timestep", "step"})

    def normalise(self) -> None:
        if isinstance(self.layer, (list, tuple)):
            self._set("layer", tuple(self.layer))
        if isinstance(self.mask_prompt, list):
            self._set("mask_prompt", tuple(self.mask_prompt))
        for name in ("single_branch", "mask_keys", "auto_masks", "channels_last", "inference_mode"):
            self._set(name, bool(getattr(self, name)))

    def validate(self) -> None:
        super().validate()
        names = (self.layer,) if isinstance(self.layer, str) else self.layer
        if not names or not all(isinstance(n, str) for n in names):
            raise LayerError(f"layer must be a layer name or a list of layer names; got {self.layer!r}")
        if self.timestep is not None and self.step is not None:
            raise ConfigError("give either timestep (the actual T) or step (the paper's index), not both")
        if not isinstance(self.prompt, str):
            raise ConfigError(f"prompt must be a string; got {type(self.prompt).__name__}")
        # every SD VAE downsamples by 8 (re-checked against the model in setup); below an 8 x 8 latent
        # the deep layers hold one token and every pair scores 1.0
        check_size(self.size, 8, MIN_LATENT_SIZE, "the 8x-downsampled latent must be at least 8 x 8")
        check_seed("seed", self.seed)
        one_of("similarity", self.similarity, aas.SIMILARITIES)
        check_crop(self.crop)
        path_like("mask_model", self.mask_model, optional=False)
        compile_mode(self.compile)
        if self.compare_dtype is not None:
            resolve_dtype(self.compare_dtype, torch.device("cpu"))

    @property
    def higher_is_better(self) -> bool:
        return self.similarity == "cosine"

    @property
    def layer_names(self) -> list[str]:
        return [self.layer] if isinstance(self.layer, str) else list(self.layer)

    def feature_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().feature_dict().items() if k not in self.resolved_by_model}


class DiffSim(FeatureMetric):
    """DiffSim-S. Build it with :meth:`from_pretrained`; score with :meth:`score` / :meth:`matrix`.

    Features are Q/K/V of the chosen self-attention layer(s) for the guidance pair
    [unconditional, prompt]; the score is ``(AAS(A,B) + AAS(B,A)) / 2`` with one cosine over
    everything (``similarity="cosine"``, higher is more similar) or the mean squared difference
    (``similarity="mse"``, lower is more similar).
    """

    Settings = DiffSimSettings
    settings: DiffSimSettings
    default_name = "diffsim-s"
    default_model = DEFAULT_MODEL
    accepts_prompt = True
    accepts_masks = True
    #: the attention layers it reads: "self" (attn1) for DiffSim-S, "cross" (attn2) for DiffSim-C
    layer_kind: ClassVar[str] = "self"
    embed_options = ("masks", "mask_prompt")

    # ------------------------------------------------------------------ build
    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, **settings: Any) -> DiffSim:
        """Load the model and configure DiffSim-S; an SDXL model gets :class:`DiffSimXL` (its native
        size 1024 by default, and its settings: ``conditioning_size``, ``vae``)."""
        if cls is DiffSim and model is not None and detect_kind(model, settings.get("revision")) == SDXL:
            from .diffsim_sdxl import DiffSimXL

            return DiffSimXL.from_pretrained(model, **settings)
        return super().from_pretrained(model, **settings)  # type: ignore[return-value]

    @classmethod
    def load_backbone(cls, settings: DiffSimSettings) -> StableDiffusionBackbone:
        from ..backbones.lazy import LazyStableDiffusion

        model = settings.model or cls.default_model
        if detect_kind(model, settings.revision) == SDXL:  # create_metric("diffsim-s", model=SDXL) works too
            return load_unet_backbone(
                model,
                device=settings.device,
                dtype=settings.dtype,
                revision=settings.revision,
                variant=settings.variant,
                single_file_config=settings.single_file_config,
            )
        require_kind(model, (SD,), "diffsim-s", settings.revision)  # a DiT or other model: a clear error
        # a local folder loads its weights only when a feature is not in the cache (its configs answer
        # layer, step and size checks first); Hub ids and single files load now
        return LazyStableDiffusion.create(
            model,
            device=settings.device,
            dtype=settings.dtype,
            revision=settings.revision,
            variant=settings.variant,
            single_file_config=settings.single_file_config,
            compile=settings.compile,
            channels_last=settings.channels_last,
            inference_mode=settings.inference_mode,
        )

    def setup(self) -> None:
        s = self.settings
        check_size(s.size, self.backbone.latent_factor)
        step = s.step if s.timestep is not None or s.step is not None else DEFAULT_STEP
        self.timestep = self.backbone.timestep(timestep=s.timestep, step=None if s.timestep is not None else step)
        self.step = None if s.timestep is not None else step
        self.layer_names = s.layer_names
        self.layers = self.backbone.resolve(self.layer_names, kind=self.layer_kind)
        self.automask = AutoMasks(s.mask_model, s.mask_prompt, self.device, self.dtype, s.auto_masks)
        self.compare_dtype = None if s.compare_dtype is None else resolve_dtype(s.compare_dtype, self.device)

    # shortcuts to the settings used throughout
    size = property(lambda self: self.settings.size)
    prompt = property(lambda self: self.settings.prompt)
    seed = property(lambda self: self.settings.seed)
    crop = property(lambda self: self.settings.crop)
    similarity = property(lambda self: self.settings.similarity)
    single_branch = property(lambda self: self.settings.single_branch)

    def resolved(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "timestep": self.timestep, "step": self.step}

    def feature_resolved(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "timestep": self.timestep, "branches": 1 if self.single_branch else 2}

    # ------------------------------------------------------------------ embed
    @property
    def preprocessor(self) -> Resize:
        return Resize(self.size, self.crop, signed=True)

    def forward(self, pixels: torch.Tensor, prompt: str | None = None) -> Features:
        qkv = self.backbone.extract(
            pixels,
            self.layers,
            self.timestep,
            prompt or self.prompt,
            self.seed,
            single_branch=self.single_branch,
            **self.extract_options(),
        )
        tensors: dict[str, torch.Tensor] = {}
        for path, f in qkv.items():
            tensors[f"{path}/q"], tensors[f"{path}/k"], tensors[f"{path}/v"] = f.q, f.k, f.v
        return Features(tensors)

    def extract_options(self) -> dict[str, Any]:
        """Backbone-specific keywords of ``backbone.extract`` (SDXL's size conditioning, the IP-Adapter scale)."""
        return {}

    def embed(
        self,
        images: ImagesLike,
        progress: bool = False,
        prompt: str | None = None,
        masks: MaskLike | Sequence[MaskLike] = None,
        mask_prompt: Prompts = None,
        **options: Any,
    ) -> Features:
        """Q/K/V features of each image; each distinct image runs the VAE and U-Net once per config.

        ``prompt`` overrides the metric's prompt for this call (e.g. NIGHTS' per-triplet prompts).
        ``masks`` (one per image, None entries allowed; see :mod:`diffsim.masks`) attaches foreground
        weights on each layer's token grid: ``compare`` then weights every query token by its mask
        (background tokens count less or not at all) and, with ``mask_keys=True``, lets attention read
        foreground keys only. ``masks="auto"`` (or ``"auto"`` entries) takes them from the metric's
        segmentation model, prompted with ``mask_prompt`` (one text or one per image; default: the
        metric's ``mask_prompt``). Masks do not change the cached network features.
        """
        return super().embed(images, progress, prompt=prompt, masks=masks, mask_prompt=mask_prompt, **options)

    def finish(
        self,
        feats: Features,
        images: list[ImageLike],
        masks: MaskLike | Sequence[MaskLike] = None,
        mask_prompt: Prompts = None,
    ) -> Features:
        masks = self.automask.resolve(masks, images, mask_prompt)
        if masks is None:
            if self.settings.mask_keys and not getattr(self, "_warned_no_masks", False):  # e.g. diffsim-s-fg
                logger.warning(
                    "%s: mask_keys=True but no masks were given: every token counts fully (plain "
                    'DiffSim-S); pass masks= or masks="auto" to weight the foreground',
                    self.name,
                )
                self._warned_no_masks = True
            return feats
        loaded = load_masks(masks, len(feats))
        tensors = dict(feats.tensors)
        for path in self.layers:
            side = int(round(tensors[f"{path}/q"].shape[-2] ** 0.5))
            w = torch.stack([to_tokens(m, side, self.crop) for m in loaded]).to(tensors[f"{path}/q"].device)
            tensors[f"{path}/mask"] = w
        return Features(tensors, feats.config, feats.names)

    # ---------------------------------------------------------------- compare
    def _layer(self, layer: str | None) -> str:
        if layer is None:
            if len(self.layers) > 1:
                raise ConfigError(
                    f"this metric has {len(self.layers)} layers; pass layer=... "
                    f"(one of {', '.join(self.layer_names)}) or use compare_layers()"
                )
            return self.layers[0]
        if layer in self.layers:
            return layer
        path = self.backbone.resolve([layer], kind=self.layer_kind)[0]
        if path not in self.layers:
            raise LayerError(f"layer {layer!r} was not embedded; this metric has {', '.join(self.layer_names)}")
        return path

    def qkv(self, feats: Features, layer: str | None = None) -> QKV:
        """The Q/K/V tensors of one layer from embedded features."""
        path = self._layer(layer)
        t = feats.tensors
        if f"{path}/q" not in t:
            raise LayerError(f"features have no layer {path}; they were computed with {feats.config.get('layers')}")
        return QKV(t[f"{path}/q"], t[f"{path}/k"], t[f"{path}/v"])

    def compare(self, a: Features, b: Features, layer: str | None = None) -> torch.Tensor:
        """Symmetric DiffSim-S scores of paired features, (N,) float32."""
        self.check_pair(a, b)
        return aas.score(
            self.qkv(a, layer),
            self.qkv(b, layer),
            self.similarity,
            dtype=self.compare_dtype,
            **self._weights(a, b, layer),
        )

    def compare_matrix(self, a: Features, b: Features, layer: str | None = None) -> torch.Tensor:
        """All-pairs scores (len(a), len(b)); cost grows with N*M attention products only."""
        self.check_pair(a, b)
        return aas.score_matrix(
            self.qkv(a, layer),
            self.qkv(b, layer),
            self.similarity,
            dtype=self.compare_dtype,
            **self._weights(a, b, layer),
        )

    def _weights(self, a: Features, b: Features, layer: str | None) -> dict[str, Any]:
        """Token weights from attached masks (a side without masks counts every token fully)."""
        path = self._layer(layer)
        wa, wb = a.tensors.get(f"{path}/mask"), b.tensors.get(f"{path}/mask")
        if wa is None and wb is None:
            return {}
        t = self.qkv(a, layer).q.shape[-2]
        wa = wa if wa is not None else torch.ones(len(a), t, device=self.device)
        wb = wb if wb is not None else torch.ones(len(b), t, device=self.device)
        return {"weights_a": wa, "weights_b": wb, "mask_keys": self.settings.mask_keys}

    def compare_layers(self, a: Features, b: Features) -> dict[str, torch.Tensor]:
        """Scores for every embedded layer: {layer name as given: (N,)}."""
        return {name: self.compare(a, b, path) for name, path in zip(self.layer_names, self.layers, strict=False)}

    def pool(self, feats: Features) -> torch.Tensor:
        """One L2-normalised vector per image for approximate search (e.g. a faiss prefilter).

        Per layer, the token mean and the token standard deviation of the image's own attention output
        ``softmax(QK^T)V`` (what AAS compares the aligned outputs with), each part normalised. On a
        labelled gallery (benchmarks/bench_gallery.py) its top-200 held 98% of the exact AAS top-10,
        against 7% for the plain Q/K/V token means.
        """
        parts = []
        for path in self.layers:
            qkv = self.qkv(feats, path)
            own = aas.attend(qkv.q, qkv.k, qkv.v)
            n = own.shape[0]
            parts += [
                torch.nn.functional.normalize(own.mean(dim=-2).reshape(n, -1), dim=1),
                torch.nn.functional.normalize(own.std(dim=-2).reshape(n, -1), dim=1),
            ]
        return torch.nn.functional.normalize(torch.cat(parts, dim=1), dim=1)

    def token_maps(self, a: Features, b: Features, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token cosine maps (N, h, w): AAS(A,B) on A's token grid and AAS(B,A) on B's."""
        self.check_pair(a, b)
        qa, qb = self.qkv(a, layer), self.qkv(b, layer)
        side = int(round(qa.q.shape[-2] ** 0.5))
        ma, mb = aas.token_map(qa, qb), aas.token_map(qb, qa)
        return ma.reshape(-1, side, side), mb.reshape(-1, side, side)

    def similarity_map(
        self, a: ImageLike, b: ImageLike, layer: str | None = None, overlay: bool = False, **style: Any
    ) -> tuple[torch.Tensor, torch.Tensor] | Any:
        """Spatial maps for two images: (h, w) for A's tokens and (h, w) for B's.

        ``overlay=True`` returns instead a PIL image of both maps drawn over both images with the score
        (:func:`diffsim.viz.similarity_overlay`; needs the ``plots`` extra; ``style``: vmin, vmax, alpha).
        """
        if overlay:
            from ..viz.maps import similarity_overlay

            return similarity_overlay(self, a, b, layer, **style)
        fa, fb = self._embed_both(a, b)
        ma, mb = self.token_maps(fa, fb, layer)
        return ma[0], mb[0]
