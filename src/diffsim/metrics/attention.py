"""One base for every attention metric: the Aligned Attention Score on an attention backbone.

:class:`AttentionMetric` holds what DiffSim on SD 1.x/2.x, SDXL, DiT and SD + IP-Adapter share: the
backbone (any :class:`~diffsim.backbones.protocol.AttentionBackbone`, loaded from the metric's load
settings as one :class:`~diffsim.backbones.spec.LoadSpec`), layer / timestep / size resolution,
``forward`` through the backbone's one ``extract``, and the AAS comparisons (``compare``, ``matrix``,
per-layer scores, token maps, ``pool``). What differs is data on the thin registered classes:
``Settings``, ``backbone_class``, ``layer_kind`` (``"self"`` or ``"cross"``) and ``conditioning``
(:mod:`.conditioning`: a text prompt with masks, or a class label).

Features are Q/K/V of the chosen attention layer(s) for the guidance pair; the score is
``(AAS(A,B) + AAS(B,A)) / 2`` with one cosine over everything (``similarity="cosine"``, higher is more
similar) or the mean squared difference (``similarity="mse"``, lower is more similar).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch

from ..aas import QKV, attend, token_map
from ..aas import score as aas_score
from ..aas import score_matrix as aas_score_matrix
from ..backbones.detect import require_kind
from ..backbones.spec import LoadSpec
from ..bounds import check_size
from ..defaults import DEFAULT_STEP
from ..devices import resolve_dtype
from ..errors import ConfigError, LayerError
from ..features import Features
from ..functional.scores import diffsim_s
from ..images import ImageLike
from ..preprocess import Resize
from ..settings import RESOLVED
from .base import FeatureMetric, Preprocessor
from .conditioning import Conditioning

logger = logging.getLogger(__name__)


class AttentionMetric(FeatureMetric):
    """The Aligned Attention Score at attention layers of a diffusion backbone (see the module docstring)."""

    settings: Any  # an AttentionSettings (.attention_settings): layer, timestep, step, size, seed, ..., crop
    #: the backbone class (``load(spec)`` -> an AttentionBackbone)
    backbone_class: ClassVar[Any]
    #: model kinds (:mod:`diffsim.backbones.detect`) it takes; another kind is a ConfigError naming the fitting
    #: metric before anything loads (empty: the backbone checks)
    model_kinds: ClassVar[tuple[str, ...]] = ()
    #: the attention layers it reads: "self" (attn1) or "cross" (attn2, DiffSim-C)
    layer_kind: ClassVar[str] = "self"
    #: how the backbone is conditioned (prompt + masks, or a class label)
    conditioning: ClassVar[Conditioning] = Conditioning()
    automask: Any  # (text conditioning) the segmenter behind masks="auto"
    class_id: int  # (class conditioning) the resolved class
    _warned_no_masks: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.accepts_prompt = cls.conditioning.accepts_prompt
        cls.accepts_masks = cls.conditioning.accepts_masks
        cls.embed_options = cls.conditioning.embed_options

    # ------------------------------------------------------------------ build
    @classmethod
    def load_spec(cls, settings: Any) -> LoadSpec:
        """The load part of ``settings`` as one object (the backbone's identity and shared-model key)."""
        return LoadSpec.of(settings.load_dict(), cls.default_model, getattr(cls.backbone_class, "load_options", None))

    @classmethod
    def load_backbone(cls, settings: Any) -> Any:
        spec = cls.load_spec(settings)
        if cls.model_kinds:
            require_kind(spec.model, cls.model_kinds, cls.default_name, spec.revision)
        return cls.backbone_class.load(spec)

    def setup(self) -> None:
        s, bb = self.settings, self.backbone
        self._size = s.size if s.size is not None else bb.default_size
        check_size(self._size, bb.size_multiple)
        step = s.step if s.timestep is not None or s.step is not None else DEFAULT_STEP
        self.timestep = bb.timestep(timestep=s.timestep, step=None if s.timestep is not None else step)
        self.step = None if s.timestep is not None else step
        self.layer_names = s.layer_names
        self.layers = bb.resolve(self.layer_names, kind=self.layer_kind)
        cd = getattr(s, "compare_dtype", None)
        self.compare_dtype = None if cd is None else resolve_dtype(cd, self.device)
        self.conditioning.setup(self)

    # shortcuts to the settings used throughout
    size = property(lambda self: self._size)
    prompt = property(lambda self: getattr(self.settings, "prompt", None))
    seed = property(lambda self: self.settings.seed)
    crop = property(lambda self: self.settings.crop)
    similarity = property(lambda self: self.settings.similarity)
    single_branch = property(lambda self: self.settings.single_branch)

    def _resolved_size(self) -> dict[str, Any]:
        return {"size": self._size} if self.settings.role_of("size") == RESOLVED else {}

    def resolved(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "timestep": self.timestep,
            "step": self.step,
            **self.conditioning.resolved(self),
            **self._resolved_size(),
        }

    def feature_resolved(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "timestep": self.timestep,
            **self.conditioning.resolved(self),
            **self._resolved_size(),
            "branches": 1 if self.single_branch else 2,
        }

    # ------------------------------------------------------------------ embed
    @property
    def preprocessor(self) -> Preprocessor:
        return Resize(self._size, self.crop, signed=True)

    def forward(self, pixels: torch.Tensor, *args: Any, **call: Any) -> Features:
        cond = self.conditioning.condition(self, **call)
        branches = 1 if self.single_branch else 2
        qkv = self.backbone.extract(pixels, self.layers, self.timestep, cond, self.seed, branches)
        tensors: dict[str, torch.Tensor] = {}
        for path, f in qkv.items():
            tensors[f"{path}/q"], tensors[f"{path}/k"], tensors[f"{path}/v"] = f.q, f.k, f.v
        return Features(tensors)

    def finish(self, feats: Features, images: list[ImageLike], *args: Any, **options: Any) -> Features:
        return self.conditioning.finish(self, feats, images, **options)

    is_differentiable = True

    def differentiable_scores(
        self, x: torch.Tensor, y: torch.Tensor, noise: Any = None, checkpoint: bool = False
    ) -> torch.Tensor:
        """:func:`diffsim.functional.diffsim_s` with this metric's settings (the mean over its layers)."""
        if getattr(self.settings, "auto_masks", False):
            raise ConfigError(f"{self.name}: foreground masks (auto_masks) are not offered on the differentiable path")
        condition = self.conditioning.condition(self)  # the metric's own strategy (prompt, size, scale, class)
        scores = [
            diffsim_s(
                x,
                y,
                self.backbone,
                path,
                self.timestep,
                condition,
                self.seed,
                size=self.size,
                crop=self.crop,
                similarity=self.similarity,
                single_branch=self.single_branch,
                noise=noise,
                checkpoint=checkpoint,
                layer_kind=self.layer_kind,
                compare_dtype=self.compare_dtype,
            )
            for path in self.layers
        ]
        return scores[0] if len(scores) == 1 else torch.stack(scores).mean(0)

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
        return aas_score(
            self.qkv(a, layer),
            self.qkv(b, layer),
            self.similarity,
            dtype=self.compare_dtype,
            **self._weights(a, b, layer),
        )

    def compare_matrix(self, a: Features, b: Features, layer: str | None = None) -> torch.Tensor:
        """All-pairs scores (len(a), len(b)); cost grows with N*M attention products only."""
        self.check_pair(a, b)
        return aas_score_matrix(
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
        return {"weights_a": wa, "weights_b": wb, "mask_keys": getattr(self.settings, "mask_keys", False)}

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
            own = attend(qkv.q, qkv.k, qkv.v)
            n = own.shape[0]
            parts += [
                torch.nn.functional.normalize(own.mean(dim=-2).reshape(n, -1), dim=1),
                torch.nn.functional.normalize(own.std(dim=-2, correction=0).reshape(n, -1), dim=1),
            ]
        return torch.nn.functional.normalize(torch.cat(parts, dim=1), dim=1)

    def token_maps(self, a: Features, b: Features, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token cosine maps (N, h, w): AAS(A,B) on A's token grid and AAS(B,A) on B's."""
        self.check_pair(a, b)
        qa, qb = self.qkv(a, layer), self.qkv(b, layer)
        side = int(round(qa.q.shape[-2] ** 0.5))
        ma, mb = token_map(qa, qb), token_map(qb, qa)
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
