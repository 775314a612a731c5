"""Metric registry: the single source of names, presets, aliases, polarity and paper rows.

Like ``pyiqa.create_metric`` / ``list_models``: every entry is data (name, class, default settings,
description, paper row); aliases point at entries. ``create_metric(name, **overrides)`` builds the
class with the entry's defaults updated by ``overrides`` (checked against the class's settings: an
unknown name is a :class:`ConfigError` listing the valid ones). The instance knows its registry name
(``metric.name``) and its polarity (from its own settings).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:  # the metric classes (and torch) are imported when a metric is first used
    from .metrics.base import Metric


@dataclass(frozen=True)
class MetricInfo:
    """What a registered metric is and how it is built.

    ``cls`` is the metric class or its import path ``"module:Class"`` (imported on first use).
    """

    name: str
    cls: Any
    description: str
    backbone: str
    measures: tuple[str, ...] = ()
    paper: str = ""
    paper_row: str | None = None  # the row of the paper's Table 1 this metric reproduces
    defaults: dict[str, Any] = field(default_factory=dict)
    #: "higher" (a similarity) or "lower" (a distance): the preset's polarity as data, so that listing the
    #: registry imports no metric (tests/test_every_metric.py checks it against each instance's settings)
    polarity: str = "higher"

    def __post_init__(self) -> None:
        if self.polarity not in ("higher", "lower"):
            raise ConfigError(f"metric {self.name!r}: polarity must be 'higher' or 'lower'; got {self.polarity!r}")

    @property
    def metric_class(self) -> type[Metric]:
        if isinstance(self.cls, str):
            module, _, attr = self.cls.partition(":")
            return getattr(importlib.import_module(module), attr)
        return self.cls

    @property
    def higher_is_better(self) -> bool:
        """Polarity of the preset as registered (settings such as ``similarity="mse"`` may change an instance's)."""
        return self.polarity == "higher"

    def settings_names(self) -> list[str]:
        return self.metric_class.Settings.names()


_REGISTRY: dict[str, MetricInfo] = {}
_ALIASES: dict[str, str] = {}


def settings_of(info: MetricInfo, **overrides: Any) -> Any:
    """The preset's settings object with ``overrides`` applied (validated, nothing loaded)."""
    klass = info.metric_class
    base = klass.Settings.create(info.name, **info.defaults)
    return base.replace(info.name, **overrides)


def register_metric(info: MetricInfo, overwrite: bool = False) -> MetricInfo:
    """Add a metric to the registry (``overwrite=True`` to replace an existing name)."""
    if (info.name in _REGISTRY or info.name in _ALIASES) and not overwrite:
        raise ConfigError(f"metric {info.name!r} is already registered")
    _ALIASES.pop(info.name, None)
    _REGISTRY[info.name] = info
    return info


def unregister_metric(name: str) -> None:
    """Remove a registered metric and the aliases naming it (e.g. a throw-away metric of a test)."""
    _REGISTRY.pop(name, None)
    for alias in [a for a, target in _ALIASES.items() if target == name]:
        del _ALIASES[alias]


def register_alias(alias: str, target: str) -> None:
    """Let ``alias`` name the registered metric ``target``."""
    if target not in _REGISTRY:
        raise ConfigError(f"cannot alias {alias!r} to unknown metric {target!r}")
    if alias in _REGISTRY:
        raise ConfigError(f"{alias!r} is already a registered metric")
    _ALIASES[alias] = target


def list_metrics(pattern: str = "*") -> list[str]:
    """Registered metric names (not aliases) matching a glob pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def differentiable_metrics() -> list[str]:
    """Registered metrics whose class has a differentiable path (``is_differentiable``): the ones ``as_loss`` takes."""
    return [n for n in list_metrics() if getattr(_REGISTRY[n].metric_class, "is_differentiable", False)]


def list_aliases() -> dict[str, str]:
    """{alias: metric name}."""
    return dict(_ALIASES)


def resolve_name(name: str) -> str:
    """The registered name for ``name`` (aliases resolved); unknown names get close-match suggestions."""
    if name in _REGISTRY:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    known = list(_REGISTRY) + list(_ALIASES)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown metric {name!r}.{hint} Available: {', '.join(list_metrics())} (`diffsim list`).")


def metric_info(name: str) -> MetricInfo:
    """The registry entry for ``name`` (or an alias of it)."""
    return _REGISTRY[resolve_name(name)]


AUTO = "auto"


def metric_for_model(model: Any, revision: str | None = None, options: Any = ()) -> str:
    """The registered metric for ``model``'s kind (read from its metadata, no weights loaded; the table of
    :mod:`diffsim.backbones.kinds`); a load option in ``options`` may pick a derived kind (``ip_adapter``)."""
    from .backbones.detect import describe_kind, detect_kind
    from .backbones.kinds import DEFAULT_KIND, find_kind, kinds, usable_kinds

    kind = detect_kind(model, revision) or DEFAULT_KIND  # unreadable metadata: the default kind's loader says why
    info = find_kind(kind)
    if info is None or info.metric is None:
        takes = ", ".join(k.description for k in usable_kinds() if k.base is None)
        raise ConfigError(f"no metric for {model}: it is {describe_kind(kind)}; DiffSim takes {takes}")
    derived = [k for k in kinds() if k.base == kind and k.option in options and k.metric]
    return derived[0].metric if derived else info.metric  # type: ignore[return-value]


def create_metric(name: str, **overrides: Any) -> Metric:
    """Build metric ``name`` with its registered defaults, updated by ``overrides``.

    ``name="auto"`` (with ``model=``) builds the metric for the model's kind: DiffSim-S for SD 1.x/2.x
    (DiffSim-C with ``ip_adapter=``), DiffSim-S on SDXL, DiffSim on DiT (:mod:`diffsim.backbones.kinds`).
    """
    if name == AUTO:
        if overrides.get("model") is None:
            raise ConfigError('create_metric("auto") needs model= (a hub id, folder or single file)')
        name = metric_for_model(overrides["model"], overrides.get("revision"), set(overrides))
    info = metric_info(name)
    klass = info.metric_class
    if getattr(klass, "votes", False) and hasattr(klass, "build"):  # an ensemble: members from this registry
        own = set(klass.Settings.names())
        common = {k: v for k, v in overrides.items() if k not in own}  # e.g. device=: given to every member
        overrides = {k: v for k, v in overrides.items() if k in own}
        if common:
            overrides["common"] = {**dict(overrides.get("common", {})), **common}
        settings = settings_of(info, **overrides)
        return klass.build(create_metric, name=info.name, **settings.to_dict())
    return klass(settings_of(info, **overrides), name=info.name)


# ------------------------------------------------------------------------------------ the presets
PAPER = "Song et al., DiffSim, ICCV 2025"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
_CLIP = "openai/clip-vit-base-patch32"
_DINO = "facebook/dinov2-small"
_DINO3 = "facebook/dinov3-vits16-pretrain-lvd1689m"
_LPIPS = "Zhang et al., LPIPS, CVPR 2018"
_M = "diffsim.metrics."

_DIFFSIM_PRESETS = {
    "diffsim-s": ({}, "DiffSim-S, general setting: up0 at paper step 500", ("human-aligned",)),
    "diffsim-s-style": (
        {"step": 900},
        "DiffSim-S for style (Sref, InstantStyle, TID2013): up0 at step 900",
        ("style", "low-level"),
    ),
    "diffsim-s-nights": ({"step": 500}, "DiffSim-S for NIGHTS: up0 at step 500", ("human-aligned",)),
    "diffsim-s-instance": ({"step": 750}, "DiffSim-S for instances (DreamBench++, IP): up0 at step 750", ("instance",)),
    "diffsim-s-cute": ({"step": 600}, "DiffSim-S for CUTE: up0 at step 600", ("instance",)),
}
for _name, (_over, _desc, _measures) in _DIFFSIM_PRESETS.items():
    register_metric(
        MetricInfo(
            _name,
            _M + "diffsim_s:DiffSim",
            _desc,
            SD15,
            _measures,
            PAPER,
            "DiffSim",
            {"layer": "up0", "step": 500, "size": 512, "prompt": "High quality image", **_over},
        )
    )

for _info in (
    MetricInfo(
        "diffsim-s-fg",
        _M + "diffsim_s:DiffSim",
        'DiffSim-S with foreground masks: pass masks= (or masks="auto": CLIPSeg) to embed/score; background '
        "tokens get no weight",
        SD15,
        ("instance",),
        PAPER + " (sec 4.8 failure case)",
        None,
        {"layer": "up0", "step": 750, "mask_keys": True},
    ),
    MetricInfo(
        "diffsim-feat",
        _M + "diffsim_feat:DiffSimFeatures",
        "ablation: cosine of the U-Net attention output at the DiffSim-S layer, no AAS",
        SD15,
        ("ablation",),
        PAPER + " (Table 3)",
        None,
        {"layer": "up0", "step": 500, "out_proj": True},
    ),
    MetricInfo(
        "clip-aas",
        _M + "vit_aas:CLIPAAS",
        "AAS in a CLIP ViT self-attention layer (ours, Table 1/3)",
        _CLIP,
        ("style", "low-level", "human-aligned"),
        PAPER,
        "CLIP AAS",
        {"layer": -1, "size": 224, "qkv_input": "normed", "out_proj": False},
    ),
    MetricInfo(
        "dinov2-aas",
        _M + "vit_aas:DINOv2AAS",
        "AAS in a DINOv2 self-attention layer (ours, Table 1/3)",
        _DINO,
        ("style", "instance", "human-aligned"),
        PAPER,
        "DINO v2 AAS",
        {"layer": -1, "size": 224, "resize": 256, "qkv_input": "normed", "out_proj": False},
    ),
    MetricInfo(
        "dinov3-aas",
        _M + "vit_aas:DINOv3AAS",
        "AAS in a DINOv3 self-attention layer (the paper's ViT AAS on DINOv3; CLS + registers kept, RoPE on Q/K)",
        _DINO3,
        ("style", "instance", "human-aligned"),
        PAPER + " (ViT AAS) on Simeoni et al., DINOv3, 2025",
        None,
        {"layer": -1, "size": 224, "qkv_input": "normed", "out_proj": False},
    ),
    MetricInfo(
        "clip-i",
        _M + "vit_embed:CLIPI",
        "cosine of CLIP image embeddings (x100 with scale=100)",
        _CLIP,
        ("instance", "human-aligned"),
        "Radford et al., CLIP, ICML 2021",
        "CLIP",
        {"size": 224},
    ),
    MetricInfo(
        "dinov2",
        _M + "vit_embed:DINOv2",
        "cosine of DINOv2 CLS tokens (x100 with scale=100)",
        _DINO,
        ("instance", "human-aligned"),
        "Oquab et al., DINOv2, TMLR 2024",
        "DINO v2",
        {"size": 224, "resize": 256},
    ),
    MetricInfo(
        "dinov3",
        _M + "vit_embed:DINOv3",
        "cosine of DINOv3 CLS tokens (x100 with scale=100)",
        _DINO3,
        ("instance", "human-aligned"),
        "Simeoni et al., DINOv3, 2025",
        None,
        {"size": 224},
    ),
    MetricInfo(
        "clip-feat",
        _M + "vit_feat:CLIPFeatures",
        "ablation: cosine of a CLIP layer's output, no AAS",
        _CLIP,
        ("ablation",),
        PAPER + " (Table 3)",
        None,
        {"layer": -1, "feature": "output", "size": 224},
    ),
    MetricInfo(
        "dinov2-feat",
        _M + "vit_feat:DINOv2Features",
        "ablation: cosine of a DINOv2 layer's attention context, no AAS",
        _DINO,
        ("ablation",),
        PAPER + " (Table 3)",
        None,
        {"layer": -1, "feature": "attention", "size": 224, "resize": 256},
    ),
    MetricInfo(
        "lpips-vgg",
        _M + "lpips:LPIPS",
        "LPIPS v0.1 on VGG16 (distance)",
        "torchvision vgg16 IMAGENET1K_V1 + lpips v0.1 linear heads",
        ("low-level", "human-aligned"),
        _LPIPS,
        None,
        {"net": "vgg"},
        polarity="lower",
    ),
    MetricInfo(
        "lpips-vgg-512",
        _M + "lpips:LPIPS",
        "LPIPS v0.1 on VGG16 at 512 x 512, the DiffSim paper's protocol (distance)",
        "torchvision vgg16 IMAGENET1K_V1 + lpips v0.1 linear heads",
        ("low-level", "human-aligned"),
        _LPIPS,
        "LPIPS",
        {"net": "vgg", "size": 512},
        polarity="lower",
    ),
    MetricInfo(
        "lpips-alex",
        _M + "lpips:LPIPS",
        "LPIPS v0.1 on AlexNet (distance)",
        "torchvision alexnet IMAGENET1K_V1 + lpips v0.1 linear heads",
        ("low-level", "human-aligned"),
        _LPIPS,
        None,
        {"net": "alex"},
        polarity="lower",
    ),
    MetricInfo(
        "gram",
        _M + "gram:Gram",
        "cosine of VGG19 Gram matrices (style)",
        "torchvision vgg19 IMAGENET1K_V1",
        ("style",),
        "Gatys et al., CVPR 2016",
        "Gram",
        {"layer": "conv5_1", "size": 512, "rows": "all"},
    ),
    MetricInfo(
        "ffa",
        _M + "ffa:FFA",
        'foreground feature averaging: masked mean of DINOv2 patch tokens (masks= or masks="auto")',
        "facebook/dinov2-base",
        ("instance",),
        "Kotar et al., CUTE, 2024",
        "FFA",
        {"size": 336},
    ),
    MetricInfo(
        "ensemble",
        _M + "ensemble:Ensemble",
        "hard vote of DiffSim-S, CLIP-I and DINOv2 (use decide/vote for 2AFC)",
        "members' backbones",
        ("human-aligned", "instance"),
        PAPER + " (Table 1)",
        "Ensemble",
        {"members": ("diffsim-s", "clip-i", "dinov2")},
    ),
):
    register_metric(_info)
register_alias("lpips", "lpips-vgg")  # the authors' setting

# ------------------------------------------------- other backbones (paper Table 5): SDXL, DiT, DiffSim-C
for _info in (
    MetricInfo(
        "diffsim-s-sdxl",
        _M + "diffsim_sdxl:DiffSimXL",
        "DiffSim-S on SDXL base: up0 (last block of up_blocks.0) at step 500, native 1024 px "
        "(conditioning_size=1024 / size=512: the authors' setting)",
        "stabilityai/stable-diffusion-xl-base-1.0",
        ("human-aligned",),
        PAPER + " (Table 5)",
        None,
        {"layer": "up0", "step": 500, "size": 1024, "prompt": "High quality image"},
    ),
    MetricInfo(
        "diffsim-dit",
        _M + "diffsim_dit:DiffSimDiT",
        "DiffSim on DiT-XL/2: block14 self-attention, class 1 (goldfish) vs the null class, step 500",
        "facebook/DiT-XL-2-256",
        ("human-aligned",),
        PAPER + " (Table 5)",
        None,
        {"layer": "block14", "step": 500, "class_label": 1},
    ),
    MetricInfo(
        "diffsim-s-sd3",
        _M + "diffsim_sd3:DiffSimSD3",
        "DiffSim-S on SD3 / SD3.5 (MM-DiT): block12 joint attention, image-stream Q/K/V, step 500 (sigma 0.5), "
        "native 1024 px",
        "stabilityai/stable-diffusion-3-medium-diffusers",
        ("human-aligned",),
        PAPER + " (AAS) on SD3, Esser et al., ICML 2024",
        None,
        {"layer": "block12", "step": 500, "prompt": "High quality image"},
    ),
    MetricInfo(
        "diffsim-s-pixart",
        _M + "diffsim_pixart:DiffSimPixArt",
        "DiffSim-S on PixArt-Sigma (or alpha): block14 self-attention (attn1), T5 prompt, step 500, native 1024 px",
        "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS",
        ("human-aligned",),
        PAPER + " (AAS) on PixArt-Sigma, Chen et al., ECCV 2024",
        None,
        {"layer": "block14", "step": 500, "prompt": "High quality image"},
    ),
    MetricInfo(
        "diffsim-c",
        _M + "diffsim_c:DiffSimC",
        "DiffSim-C: SD 1.5 + IP-Adapter Plus, up0.cross queries against the image tokens (Eq. 11), scale 0.5",
        SD15 + " + h94/IP-Adapter ip-adapter-plus_sd15",
        ("instance",),
        PAPER + " (Table 2, Eq. 11)",
        None,
        {"layer": "up0.cross", "step": 500, "size": 512, "prompt": "High quality image", "scale": 0.5},
    ),
):
    register_metric(_info)

# ------------------------------------------- peers: DreamSim, CSD, DISTS, SSCD, IntroStyle (docs/peers.md)
_DREAMSIM = "Fu et al., DreamSim, NeurIPS 2023"
for _name, _variant, _backbone in (
    ("dreamsim", "ensemble", "DINO ViT-B/16 + CLIP ViT-B/16 + OpenCLIP ViT-B/16, LoRA"),
    ("dreamsim-dino-vitb16", "dino_vitb16", "DINO ViT-B/16, LoRA"),
    ("dreamsim-clip-vitb32", "clip_vitb32", "CLIP ViT-B/32, LoRA"),
    ("dreamsim-open-clip-vitb32", "open_clip_vitb32", "OpenCLIP ViT-B/32, LoRA"),
):
    register_metric(
        MetricInfo(
            _name,
            _M + "dreamsim:DreamSim",
            f"DreamSim {_variant} (distance 1 - cos; model: the released checkpoint folder)",
            _backbone,
            ("human-aligned",),
            _DREAMSIM,
            None,
            {"variant": _variant},
            polarity="lower",
        )
    )
for _info in (
    MetricInfo(
        "csd",
        _M + "csd:CSD",
        "CSD style descriptor: cosine of style embeddings (head='content': content ones)",
        "CLIP ViT-L/14 + CSD projection heads",
        ("style",),
        "Somepalli et al., CSD, 2024",
        None,
        {"head": "style"},
    ),
    MetricInfo(
        "dists",
        _M + "dists:DISTS",
        "DISTS structure + texture on VGG16 with L2 pooling (distance)",
        "torchvision vgg16 IMAGENET1K_V1 + DISTS alpha/beta",
        ("low-level", "human-aligned"),
        "Ding et al., DISTS, TPAMI 2020",
        None,
        {},
        polarity="lower",
    ),
    MetricInfo(
        "introstyle",
        _M + "introstyle:IntroStyle",
        "IntroStyle style distance: 2-Wasserstein between channel mean/std of an SD U-Net up block's output "
        "(up block 1, T=25, prompt 'a photo of', 4 noise draws; the DiffSim-S backbone)",
        SD15,
        ("style",),
        "Kumar et al., IntroStyle, ICCV 2025",
        None,
        {"up_block": 1, "timestep": 25, "prompt": "a photo of", "ensemble": 4, "size": 512, "crop": "center"},
        polarity="lower",
    ),
    MetricInfo(
        "sscd",
        _M + "sscd:SSCD",
        "SSCD copy-detection descriptor: cosine (threshold 0.75 flags copies, used by dedup)",
        "ResNet-50 + GeM, SSCD disc_mixup",
        ("copies", "instance"),
        "Pizzi et al., SSCD, CVPR 2022",
        None,
        {"size": 320, "threshold": 0.75},
    ),
):
    register_metric(_info)


def load(model: Any, **settings: Any) -> Metric:
    """The metric for ``model`` (hub id, folder or single file), whatever its kind: ``create_metric("auto")``."""
    return create_metric(AUTO, model=model, **settings)
