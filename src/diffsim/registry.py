"""Metric registry: names -> factories with metadata, like ``pyiqa.create_metric`` / ``list_models``.

Each entry declares its backbone, defaults, polarity and what it measures, so benchmarks, sweeps and
retrieval can build any metric by name and read how to interpret its scores.
"""
from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .metrics.base import Metric


@dataclass(frozen=True)
class MetricInfo:
    """What a registered metric is and how it is built."""

    name: str
    factory: Callable[..., Metric]
    description: str
    backbone: str
    higher_is_better: bool = True
    measures: tuple[str, ...] = ()
    paper: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, MetricInfo] = {}


def register_metric(info: MetricInfo, overwrite: bool = False) -> MetricInfo:
    """Add a metric to the registry (``overwrite=True`` to replace an existing name)."""
    if info.name in _REGISTRY and not overwrite:
        raise ConfigError(f"metric {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def list_metrics(pattern: str = "*") -> list[str]:
    """Registered metric names matching a glob pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def metric_info(name: str) -> MetricInfo:
    """The registry entry for ``name``; unknown names get close-match suggestions."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown metric {name!r}.{hint} Available: {', '.join(list_metrics())} "
                          "(`diffsim list`).")
    return _REGISTRY[name]


def create_metric(name: str, **overrides: Any) -> Metric:
    """Build metric ``name`` with its registered defaults, updated by ``overrides``."""
    info = metric_info(name)
    kwargs = dict(info.defaults)
    kwargs.update(overrides)
    return info.factory(**kwargs)


def _diffsim_factory(**kw: Any) -> Metric:
    from .metrics.diffsim_s import DiffSim

    return DiffSim.from_pretrained(**kw)


PAPER = "Song et al., DiffSim, ICCV 2025"
_DIFFSIM_PRESETS = {
    "diffsim-s": ({}, "DiffSim-S, general setting: up0 at paper step 500", ("human-aligned",)),
    "diffsim-s-style": ({"step": 900}, "DiffSim-S for style (Sref, InstantStyle, TID2013): up0 at step 900",
                        ("style", "low-level")),
    "diffsim-s-nights": ({"step": 500}, "DiffSim-S for NIGHTS: up0 at step 500", ("human-aligned",)),
    "diffsim-s-instance": ({"step": 750}, "DiffSim-S for instances (DreamBench++, IP): up0 at step 750",
                           ("instance",)),
    "diffsim-s-cute": ({"step": 600}, "DiffSim-S for CUTE: up0 at step 600", ("instance",)),
}
for _name, (_over, _desc, _measures) in _DIFFSIM_PRESETS.items():
    register_metric(MetricInfo(
        name=_name, factory=_diffsim_factory, description=_desc,
        backbone="stable-diffusion-v1-5/stable-diffusion-v1-5", higher_is_better=True, measures=_measures,
        paper=PAPER, defaults={"layer": "up0", "step": 500, "size": 512, "prompt": "High quality image", **_over}))


# ------------------------------------------------------------------ metric zoo (paper Tables 1 and 3)
def _lazy(module: str, cls: str, method: str = "from_pretrained") -> Callable[..., Metric]:
    def factory(**kw: Any) -> Metric:
        import importlib

        klass = getattr(importlib.import_module(f"diffsim.metrics.{module}"), cls)
        return getattr(klass, method)(**kw)

    factory.__name__ = f"{cls}.{method}"
    return factory


_CLIP = "openai/clip-vit-base-patch32"
_DINO = "facebook/dinov2-small"
_ZOO = [
    MetricInfo("clip-aas", _lazy("vit_aas", "CLIPAAS"), "AAS in a CLIP ViT self-attention layer (ours, Table 1/3)",
               _CLIP, True, ("style", "low-level", "human-aligned"), PAPER,
               {"layer": -1, "size": 224, "qkv_input": "normed", "out_proj": False}),
    MetricInfo("dinov2-aas", _lazy("vit_aas", "DINOv2AAS"), "AAS in a DINOv2 self-attention layer (ours, Table 1/3)",
               _DINO, True, ("style", "instance", "human-aligned"), PAPER,
               {"layer": -1, "size": 224, "resize": 256, "qkv_input": "normed", "out_proj": False}),
    MetricInfo("clip-i", _lazy("vit_embed", "CLIPI"), "cosine of CLIP image embeddings (x100 with scale=100)",
               _CLIP, True, ("instance", "human-aligned"), "Radford et al., CLIP, ICML 2021", {"size": 224}),
    MetricInfo("dinov2", _lazy("vit_embed", "DINOv2"), "cosine of DINOv2 CLS tokens (x100 with scale=100)",
               _DINO, True, ("instance", "human-aligned"), "Oquab et al., DINOv2, TMLR 2024",
               {"size": 224, "resize": 256}),
    MetricInfo("clip-feat", _lazy("vit_feat", "CLIPFeatures"), "ablation: cosine of a CLIP layer's output, no AAS",
               _CLIP, True, ("ablation",), PAPER + " (Table 3)", {"layer": -1, "feature": "output", "size": 224}),
    MetricInfo("dinov2-feat", _lazy("vit_feat", "DINOv2Features"),
               "ablation: cosine of a DINOv2 layer's attention context, no AAS", _DINO, True, ("ablation",),
               PAPER + " (Table 3)", {"layer": -1, "feature": "attention", "size": 224, "resize": 256}),
    MetricInfo("diffsim-feat", _lazy("diffsim_feat", "DiffSimFeatures"),
               "ablation: cosine of the U-Net attention output at the DiffSim-S layer, no AAS",
               "stable-diffusion-v1-5/stable-diffusion-v1-5", True, ("ablation",), PAPER + " (Table 3)",
               {"layer": "up0", "step": 500, "out_proj": True}),
    MetricInfo("diffsim-s-fg", _diffsim_factory,
               "DiffSim-S with foreground masks: pass masks= (or masks=\"auto\": CLIPSeg) to embed/score; background "
               "tokens get no weight",
               "stable-diffusion-v1-5/stable-diffusion-v1-5", True, ("instance",), PAPER + " (sec 4.8 failure case)",
               {"layer": "up0", "step": 750, "mask_keys": True}),
    MetricInfo("lpips-vgg", _lazy("lpips", "LPIPS"), "LPIPS v0.1 on VGG16 (distance)", "torchvision vgg16 "
               "IMAGENET1K_V1 + lpips v0.1 linear heads", False, ("low-level", "human-aligned"),
               "Zhang et al., LPIPS, CVPR 2018", {"net": "vgg", "size": 512}),
    MetricInfo("lpips-alex", _lazy("lpips", "LPIPS"), "LPIPS v0.1 on AlexNet (distance)", "torchvision alexnet "
               "IMAGENET1K_V1 + lpips v0.1 linear heads", False, ("low-level", "human-aligned"),
               "Zhang et al., LPIPS, CVPR 2018", {"net": "alex", "size": 512}),
    MetricInfo("gram", _lazy("gram", "Gram"), "cosine of VGG19 Gram matrices (style)", "torchvision vgg19 "
               "IMAGENET1K_V1", True, ("style",), "Gatys et al., CVPR 2016", {"layer": "conv5_1", "size": 512,
                                                                              "rows": "all"}),
    MetricInfo("ffa", _lazy("ffa", "FFA"),
               "foreground feature averaging: masked mean of DINOv2 patch tokens (masks= or masks=\"auto\")",
               "facebook/dinov2-base", True, ("instance",), "Kotar et al., CUTE, 2024",
               {"size": 336, "resize": 336}),
    MetricInfo("ensemble", _lazy("ensemble", "Ensemble", "from_names"),
               "hard vote of DiffSim-S, CLIP-I and DINOv2 (use decide/vote for 2AFC)",
               "members' backbones", True, ("human-aligned", "instance"), PAPER + " (Table 1)",
               {"members": ("diffsim-s", "clip-i", "dinov2")}),
]
for _info in _ZOO:
    register_metric(_info)
register_metric(MetricInfo("lpips", _lazy("lpips", "LPIPS"), "alias of lpips-vgg (the authors' setting)",
                           "torchvision vgg16 IMAGENET1K_V1 + lpips v0.1 linear heads", False,
                           ("low-level", "human-aligned"), "Zhang et al., LPIPS, CVPR 2018",
                           {"net": "vgg", "size": 512}))
