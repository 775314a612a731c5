"""DiffSim-S: the Aligned Attention Score in a self-attention layer of a Stable Diffusion U-Net."""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch

from .. import aas
from ..aas import QKV
from ..backbones.loading import DEFAULT_MODEL
from ..backbones.select import load_unet_backbone
from ..backbones.stable_diffusion import StableDiffusionBackbone
from ..cache import DEFAULT_MEMORY_BYTES, FeatureCache
from ..devices import dtype_name
from ..errors import ConfigError, LayerError
from ..features import Features
from ..images import ImagesLike, check_crop, check_size, to_unit_tensor
from ..masks import MaskLike, load_masks, to_tokens
from ..segment import DEFAULT_MASK_PROMPT, DEFAULT_SEGMENTER
from .automask import AutoMasks, Prompts
from .base import Metric, embed_cached

logger = logging.getLogger(__name__)

DEFAULT_LAYER = "up0"
DEFAULT_STEP = 500
DEFAULT_PROMPT = "High quality image"
DEFAULT_SEED = 2334


class DiffSim(Metric):
    """DiffSim-S. Build it with :meth:`from_pretrained`; score with :meth:`score` / :meth:`matrix`.

    Features are Q/K/V of the chosen self-attention layer(s) for the guidance pair
    [unconditional, prompt]; the score is ``(AAS(A,B) + AAS(B,A)) / 2`` with one cosine over
    everything (``similarity="cosine"``, higher is more similar) or the mean squared difference
    (``similarity="mse"``, lower is more similar).
    """

    name = "diffsim-s"

    def __init__(self, backbone: StableDiffusionBackbone, layer: str | Sequence[str] = DEFAULT_LAYER,
                 timestep: int | None = None, step: int | None = None, prompt: str = DEFAULT_PROMPT,
                 size: int = 512, seed: int = DEFAULT_SEED, single_branch: bool = False,
                 similarity: str = "cosine", crop: str = "none", batch_size: int = 4,
                 cache: FeatureCache | None = None, mask_keys: bool = False,
                 mask_model: str | os.PathLike = DEFAULT_SEGMENTER, mask_prompt: Prompts = DEFAULT_MASK_PROMPT,
                 auto_masks: bool = False) -> None:
        if timestep is None and step is None:
            step = DEFAULT_STEP
        self.backbone = backbone
        self.size = check_size(size, backbone.latent_factor)
        self.timestep = backbone.timestep(timestep=timestep, step=step)
        self.step = step
        names = [layer] if isinstance(layer, str) else list(layer)
        if not names:
            raise LayerError("at least one layer is required")
        self.layer_names = names
        self.layers = backbone.resolve(names, kind="self")
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt must be a string; got {type(prompt).__name__}")
        self.prompt = prompt
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer; got {seed!r}")
        self.seed = seed
        self.single_branch = bool(single_branch)
        if similarity not in aas.SIMILARITIES:
            raise ConfigError(f"similarity must be one of {', '.join(aas.SIMILARITIES)}; got {similarity!r}")
        self.similarity = similarity
        self.crop = check_crop(crop)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}")
        self.batch_size = batch_size
        self.cache = cache if cache is not None else FeatureCache()
        self.mask_keys = bool(mask_keys)
        self.automask = AutoMasks(mask_model, mask_prompt, backbone.device, backbone.dtype, auto_masks)

    @property
    def higher_is_better(self) -> bool:  # type: ignore[override]
        return self.similarity == "cosine"

    # ------------------------------------------------------------------ build
    @classmethod
    def from_pretrained(cls, model: str | os.PathLike = DEFAULT_MODEL, layer: str | Sequence[str] = DEFAULT_LAYER,
                        timestep: int | None = None, step: int | None = None, prompt: str = DEFAULT_PROMPT,
                        size: int | None = None, seed: int = DEFAULT_SEED, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, *, single_branch: bool = False,
                        similarity: str = "cosine", crop: str = "none", batch_size: int = 4,
                        cache_dir: str | os.PathLike | None = None, cache_bytes: int = DEFAULT_MEMORY_BYTES,
                        revision: str | None = None, variant: str | None = None,
                        single_file_config: str | None = None, mask_keys: bool = False,
                        mask_model: str | os.PathLike = DEFAULT_SEGMENTER, mask_prompt: Prompts = DEFAULT_MASK_PROMPT,
                        auto_masks: bool = False) -> "DiffSim":
        """Load the model (hub id, diffusers folder or single checkpoint) and configure DiffSim-S.

        SD 1.x/2.x and SDXL models are told apart by their configs (an SDXL model gets the SDXL
        backbone); ``size`` defaults to 512 (SDXL: 1024, its native size).

        ``timestep`` is the actual DDPM timestep T; ``step`` is the paper's index K with
        T = scheduler.timesteps[K] after set_timesteps(1000) (SD 1.5: T = 1001 - K). Default: step 500.
        ``mask_model`` / ``mask_prompt``: the segmentation model behind ``masks="auto"`` (loaded on first
        use, on the same device and dtype); ``auto_masks=True`` makes ``"auto"`` the default for calls
        without ``masks``.
        """
        backbone = load_unet_backbone(model, device=device, dtype=dtype, revision=revision, variant=variant,
                                      single_file_config=single_file_config)  # SD 1.x/2.x or SDXL, by its config
        size = backbone.default_size if size is None else size
        return cls(backbone, layer, timestep, step, prompt, size, seed, single_branch, similarity, crop,
                   batch_size, FeatureCache(cache_bytes, cache_dir), mask_keys=mask_keys, mask_model=mask_model,
                   mask_prompt=mask_prompt, auto_masks=auto_masks)

    def with_settings(self, **changes: Any) -> "DiffSim":
        """A copy with some settings changed, sharing the loaded model and the feature cache."""
        kw: dict[str, Any] = dict(layer=self.layer_names, timestep=self.timestep, step=None, prompt=self.prompt,
                                  size=self.size, seed=self.seed, single_branch=self.single_branch,
                                  similarity=self.similarity, crop=self.crop, batch_size=self.batch_size,
                                  mask_keys=self.mask_keys, mask_model=self.automask.model,
                                  mask_prompt=self.automask.prompt, auto_masks=self.automask.enabled)
        if "step" in changes:
            kw["timestep"] = None
        kw.update(changes)
        return DiffSim(self.backbone, cache=self.cache, **kw)

    # ----------------------------------------------------------------- config
    def feature_config(self, prompt: str | None = None) -> dict[str, Any]:
        """Everything that determines the features (the cache key is its hash)."""
        return {"metric": self.name, "model": self.backbone.source, "layers": list(self.layers),
                "timestep": self.timestep, "prompt": self.prompt if prompt is None else prompt, "seed": self.seed,
                "size": self.size, "crop": self.crop, "branches": 1 if self.single_branch else 2,
                "dtype": dtype_name(self.backbone.dtype)}

    @property
    def config(self) -> dict[str, Any]:
        cfg = self.feature_config()
        cfg.update(layer_names=list(self.layer_names), step=self.step, similarity=self.similarity,
                   mask_keys=self.mask_keys, higher_is_better=self.higher_is_better, **self.automask.describe())
        return cfg

    def __repr__(self) -> str:
        step = f", step={self.step}" if self.step is not None else ""
        return (f"DiffSim(model={self.backbone.source!r}, layer={self.layer_names}, timestep={self.timestep}{step}, "
                f"prompt={self.prompt!r}, size={self.size}, seed={self.seed}, similarity={self.similarity!r})")

    # ------------------------------------------------------------------ embed
    def embed(self, images: ImagesLike, prompt: str | None = None, progress: bool = False,
              masks: MaskLike | Sequence[MaskLike] = None, mask_prompt: Prompts = None) -> Features:
        """Q/K/V features of each image; each distinct image runs the VAE and U-Net once per config.

        ``prompt`` overrides the metric's prompt for this call (e.g. NIGHTS' per-triplet prompts).
        ``masks`` (one per image, None entries allowed; see :mod:`diffsim.masks`) attaches foreground
        weights on each layer's token grid: ``compare`` then weights every query token by its mask
        (background tokens count less or not at all) and, with ``mask_keys=True``, lets attention read
        foreground keys only. ``masks="auto"`` (or ``"auto"`` entries) takes them from the metric's
        segmentation model, prompted with ``mask_prompt`` (one text or one per image; default: the
        metric's ``mask_prompt``). Masks do not change the cached network features.
        """
        fcfg = self.feature_config(prompt)
        feats = embed_cached(images, fcfg, lambda im, i: to_unit_tensor(im, self.size, self.crop, i) * 2.0 - 1.0,
                             lambda px: self._compute(px, fcfg), self.cache, self.batch_size, self.backbone.device,
                             progress)
        masks = self.automask.resolve(masks, images, mask_prompt)
        if masks is None:
            return feats
        loaded = load_masks(masks, len(feats))
        tensors = dict(feats.tensors)
        for path in self.layers:
            side = int(round(tensors[f"{path}/q"].shape[-2] ** 0.5))
            w = torch.stack([to_tokens(m, side, self.crop) for m in loaded]).to(tensors[f"{path}/q"].device)
            tensors[f"{path}/mask"] = w
        return Features(tensors, feats.config, feats.names)

    def _compute(self, pixels: torch.Tensor, fcfg: dict[str, Any]) -> Features:
        qkv = self.backbone.extract(pixels, self.layers, self.timestep, fcfg["prompt"], self.seed,
                                    single_branch=self.single_branch)
        tensors: dict[str, torch.Tensor] = {}
        for path, f in qkv.items():
            tensors[f"{path}/q"], tensors[f"{path}/k"], tensors[f"{path}/v"] = f.q, f.k, f.v
        return Features(tensors, fcfg)

    # ---------------------------------------------------------------- compare
    def _layer(self, layer: str | None) -> str:
        if layer is None:
            if len(self.layers) > 1:
                raise ConfigError(f"this metric has {len(self.layers)} layers; pass layer=... "
                                  f"(one of {', '.join(self.layer_names)}) or use compare_layers()")
            return self.layers[0]
        if layer in self.layers:
            return layer
        path = self.backbone.resolve([layer])[0]
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

    @staticmethod
    def _check_pair(a: Features, b: Features) -> None:
        ca = {k: v for k, v in a.config.items() if k != "prompt"}
        cb = {k: v for k, v in b.config.items() if k != "prompt"}
        if ca != cb:
            diff = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
            raise ConfigError(f"features were computed with different settings ({', '.join(diff)}); "
                              "embed both sides with the same metric")

    def compare(self, a: Features, b: Features, layer: str | None = None) -> torch.Tensor:
        """Symmetric DiffSim-S scores of paired features, (N,) float32."""
        self._check_pair(a, b)
        return aas.score(self.qkv(a, layer), self.qkv(b, layer), self.similarity, **self._weights(a, b, layer))

    def compare_matrix(self, a: Features, b: Features, layer: str | None = None) -> torch.Tensor:
        """All-pairs scores (len(a), len(b)); cost grows with N*M attention products only."""
        self._check_pair(a, b)
        return aas.score_matrix(self.qkv(a, layer), self.qkv(b, layer), self.similarity,
                                **self._weights(a, b, layer))

    def _weights(self, a: Features, b: Features, layer: str | None) -> dict[str, Any]:
        """Token weights from attached masks (a side without masks counts every token fully)."""
        path = self._layer(layer)
        wa, wb = a.tensors.get(f"{path}/mask"), b.tensors.get(f"{path}/mask")
        if wa is None and wb is None:
            return {}
        t = self.qkv(a, layer).q.shape[-2]
        wa = wa if wa is not None else torch.ones(len(a), t, device=self.backbone.device)
        wb = wb if wb is not None else torch.ones(len(b), t, device=self.backbone.device)
        return {"weights_a": wa, "weights_b": wb, "mask_keys": self.mask_keys}

    def compare_layers(self, a: Features, b: Features) -> dict[str, torch.Tensor]:
        """Scores for every embedded layer: {layer name as given: (N,)}."""
        return {name: self.compare(a, b, path) for name, path in zip(self.layer_names, self.layers)}

    def token_maps(self, a: Features, b: Features, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token cosine maps (N, h, w): AAS(A,B) on A's token grid and AAS(B,A) on B's."""
        self._check_pair(a, b)
        qa, qb = self.qkv(a, layer), self.qkv(b, layer)
        side = int(round(qa.q.shape[-2] ** 0.5))
        ma, mb = aas.token_map(qa, qb), aas.token_map(qb, qa)
        return ma.reshape(-1, side, side), mb.reshape(-1, side, side)

    def similarity_map(self, a: ImagesLike, b: ImagesLike, layer: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Spatial maps for two images: (h, w) for A's tokens and (h, w) for B's."""
        fa, fb = self._embed_both(a, b)
        ma, mb = self.token_maps(fa, fb, layer)
        return ma[0], mb[0]
