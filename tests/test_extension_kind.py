"""A throw-away backbone kind added at test time through the public extension points only
(``register_kind``, ``register_metric`` and the test-side ``register_tiny``): detection, ``diffsim.load`` /
``create_metric("auto")``, ``diffsim layers``, the backbone contract, the metric properties and the shared
loss / functional tests run on it with no shared file edited. The kind is an SD backbone under another name,
recognised by its own pipeline class name, as a new latent-diffusion backbone module would register itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import diffsim
from diffsim import ConfigError, create_metric
from diffsim.backbones.detect import detect_kind
from diffsim.backbones.kinds import KindInfo, register_kind, unregister_kind, usable_kinds
from diffsim.backbones.stable_diffusion import StableDiffusionBackbone
from diffsim.metrics.diffsim_s import DiffSim
from diffsim.models import clear_models
from diffsim.registry import MetricInfo, register_metric, unregister_metric

from . import test_backbone_contract as contract
from . import test_functional as functional
from . import test_loss as loss
from .conftest import SIZE
from .test_cli import run
from .tiny_builders import TinyBackbone, register_tiny, tiny_backbones, unregister_tiny
from .tiny_loss import build, loss_rows
from .tiny_sd import build_tiny_pipeline
from .zoo_props import check_properties

TOY, PIPELINE, METRIC = "toy-sd", "ToyDiffusionPipeline", "toy-diffsim"
CPU = {"device": "cpu", "dtype": "float32"}


class ToyBackbone(StableDiffusionBackbone):
    """An SD backbone under another kind name."""

    kind = TOY


class ToyDiffSim(DiffSim):
    """DiffSim-S on the toy kind."""

    default_name = METRIC
    backbone_class = ToyBackbone
    model_kinds = (TOY,)


def build_toy(folder: Path, seed: int, paths: dict[str, str]) -> Path:
    """A tiny SD pipeline (other weights than the session's) whose model_index.json names the toy pipeline."""
    path = build_tiny_pipeline(folder, seed=seed + 5)
    index = json.loads((path / "model_index.json").read_text())
    (path / "model_index.json").write_text(json.dumps({**index, "_class_name": PIPELINE}))
    return path


@pytest.fixture(scope="module")
def toy(tmp_path_factory, tiny_backbone_paths):
    """The toy kind registered (and removed afterwards); its two contract folders and the path table."""
    register_kind(KindInfo(TOY, f"a toy pipeline ({PIPELINE})", ToyBackbone, METRIC, pipelines=(PIPELINE,)))
    register_metric(MetricInfo(METRIC, ToyDiffSim, "DiffSim-S on the toy kind", "toy", defaults={"layer": "up0"}))
    register_tiny(TinyBackbone(TOY, build_toy, "toy", "up0"))
    try:
        root = tmp_path_factory.mktemp("toy")
        paths = {**tiny_backbone_paths, "toy": str(build_toy(root / "tiny-toy" / "model", 0, tiny_backbone_paths))}
        weights = {TOY: contract.build_pair(TOY, root / "contract", paths)}
        yield paths, weights
    finally:
        unregister_tiny(TOY)
        unregister_metric(METRIC)
        unregister_kind(TOY)
        clear_models()


def test_the_kind_is_in_both_tables(toy):
    assert TOY in {k.name for k in usable_kinds()} and TOY in tiny_backbones()


def test_detection_and_dispatch(toy):
    paths, _ = toy
    folder = paths["toy"]
    assert detect_kind(folder) == TOY and detect_kind(paths["sd"]) == "sd"
    metric = diffsim.load(folder, size=SIZE, **CPU)
    assert type(metric) is ToyDiffSim and metric.name == METRIC and type(metric.backbone) is ToyBackbone
    auto = create_metric("auto", model=folder, size=SIZE, **CPU)
    assert type(auto) is ToyDiffSim and auto.backbone is metric.backbone
    with pytest.raises(ConfigError, match=rf"it is a toy pipeline.*for this model use {METRIC}"):
        create_metric("diffsim-s-sdxl", model=folder, size=SIZE, **CPU)
    with pytest.raises(ConfigError, match="toy-diffsim cannot use .*expected a toy pipeline"):
        create_metric(METRIC, model=paths["sdxl"], size=SIZE, **CPU)


def test_layers_cli(toy, capsys):
    code, out, err = run(capsys, "layers", "--model", toy[0]["toy"], "--size", str(SIZE), "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert any(r["alias"] == "up0" and r["path"].startswith("up_blocks.1.") for r in rows)


def test_backbone_contract(toy, tmp_path, image_files, capsys):
    paths, weights = toy
    contract.test_protocol_shapes_aliases_and_steps(TOY, weights, paths)
    contract.test_batch_equals_single_with_counted_passes(TOY, weights, paths)
    contract.test_identity_follows_the_weights(TOY, weights, paths, tmp_path)
    contract.test_cli_cache_never_reuses_numbers_of_other_weights(TOY, weights, paths, image_files, tmp_path, capsys)


def test_metric_properties(toy, rand_images):
    paths, _ = toy
    metric = create_metric(METRIC, **tiny_backbones()[TOY].metric_overrides(paths, SIZE))
    check_properties(metric, rand_images)


def test_loss_and_functional_tests(toy, request):
    """The shared loss / functional tests read their kinds from the tiny table: the toy kind's default metric
    is a loss (1 - score, gradients to both inputs, frozen backbone), equals the cached path, broadcasts one
    image, and its gradient matches finite differences in float64."""
    assert TOY in loss_rows()
    metric = build(TOY, request)
    assert type(metric) is ToyDiffSim and metric.is_differentiable
    loss.test_loss_is_one_minus_score_or_the_distance_and_reaches_both_inputs(metric)
    loss.test_reductions(metric)
    functional.test_functional_equals_cached_score_on_the_same_pixels(metric)
    functional.test_functional_leaves_the_feature_cache_alone(metric)
    functional.test_one_image_broadcasts_and_bad_counts_fail(metric)
    functional.test_gradient_matches_finite_differences_in_float64(metric)
