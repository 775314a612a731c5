"""One test over every registered metric, driven by the registry (pyiqa / torchmetrics style).

Each metric is built by name from a tiny random backbone (the table below: a registered metric without a
row fails), then checked for identity, symmetry, batch = single, matrix = compare, polarity against the
registry, ``with_settings`` keeping the class and every setting, and a JSON-serialisable config.
"""

from __future__ import annotations

import pytest
import torch

from diffsim import create_metric, list_metrics

from .conftest import SIZE
from .tiny_builders import tiny_backbones
from .tiny_peers import PEER_SIZE
from .tiny_vit import VIT_SIZE
from .zoo_props import check_registered_metric

CPU = {"device": "cpu", "dtype": "float32"}


def tiny_overrides(name: str, paths: dict[str, str]) -> dict:
    """Settings that point metric ``name`` at a tiny model (KeyError: the metric has no row yet)."""
    sd = {"model": paths["sd"], "size": SIZE, **CPU}
    clip = {"model": paths["clip"], "size": VIT_SIZE, **CPU}
    dino = {"model": paths["dino"], "size": VIT_SIZE, **CPU}
    dino3 = {"model": paths["dino3"], "size": VIT_SIZE, **CPU}
    table = {
        **{
            n: sd
            for n in (
                "diffsim-s",
                "diffsim-s-style",
                "diffsim-s-nights",
                "diffsim-s-instance",
                "diffsim-s-cute",
                "diffsim-s-fg",
                "diffsim-feat",
            )
        },
        "clip-aas": clip,
        "clip-i": clip,
        "clip-feat": clip,
        "dinov2-aas": dino,
        "dinov2": dino,
        "dinov2-feat": dino,
        "dinov3-aas": dino3,
        "dinov3": dino3,
        "ffa": dino,
        "lpips-vgg": {"weights": None, "size": 32, "device": "cpu"},
        "lpips-vgg-512": {"weights": None, "size": 32, "device": "cpu"},
        "lpips-alex": {"weights": None, "size": 32, "device": "cpu"},
        "gram": {"weights": None, "size": 32, "device": "cpu"},
        "ensemble": {"overrides": {"diffsim-s": sd, "clip-i": clip, "dinov2": dino}},
        # each backbone kind's default metric on its tiny model (tests/tiny_builders.py)
        **{row.metric: row.metric_overrides(paths, SIZE) for row in tiny_backbones().values()},
        "introstyle": {**sd, "ensemble": 2},
        **{
            f"dreamsim{'-' + v.replace('_', '-') if v != 'ensemble' else ''}": {
                "model": paths[f"dreamsim:{v}"],
                "size": PEER_SIZE,
                **CPU,
            }
            for v in ("ensemble", "dino_vitb16", "clip_vitb32", "open_clip_vitb32")
        },
        "csd": {"model": paths["csd"], "size": PEER_SIZE, **CPU},
        "sscd": {"model": paths["sscd"], "size": SIZE, **CPU},
        "dists": {"weights": None, "dists_weights": paths["dists"], "size": 32, "device": "cpu"},
    }
    return table[name]


@pytest.fixture(scope="module")
def paths(tiny_model_paths) -> dict[str, str]:
    return tiny_model_paths


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 3, SIZE, SIZE, generator=g)
    x[1] = 0.6 * x[0] + 0.4 * x[1]  # one pair clearly closer than the others
    return x


@pytest.mark.parametrize("name", list_metrics())
def test_every_registered_metric(name, paths, images):
    try:
        over = tiny_overrides(name, paths)
    except KeyError:
        pytest.fail(f"registered metric {name!r} has no tiny-model row in tiny_overrides(): add one")
    check_registered_metric(name, over, images)


def test_polarity_follows_settings(paths):
    mse = create_metric("diffsim-s", similarity="mse", **tiny_overrides("diffsim-s", paths))
    assert mse.higher_is_better is False and mse.config["higher_is_better"] is False
    assert create_metric("lpips", weights=None, size=32, device="cpu").name == "lpips-vgg"


def test_timestep_and_step_replace_each_other(paths):
    m = create_metric("diffsim-s-style", timestep=101, **tiny_overrides("diffsim-s", paths))  # preset has step=900
    assert m.timestep == 101 and m.step is None
    assert m.with_settings(step=900).timestep == 101 and m.with_settings(step=500).timestep == 501


def test_diffsim_feat_with_settings_keeps_its_settings(paths):
    m = create_metric("diffsim-feat", out_proj=False, **tiny_overrides("diffsim-feat", paths))
    again = m.with_settings(step=900)
    assert type(again) is type(m) and again.settings.out_proj is False and again.name == "diffsim-feat"
