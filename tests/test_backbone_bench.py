"""Sweeps and 2AFC benchmarks run unchanged on the SDXL, DiT and DiffSim-C metrics (tiny models)."""

from __future__ import annotations

import csv

import pytest

from diffsim import create_metric
from diffsim.bench import EvalOptions, evaluate_2afc
from diffsim.bench.sweep import sweep
from diffsim.datasets import load_dataset

from . import bench_fixtures as fx
from .conftest import SIZE

CASES = {
    "diffsim-s-sdxl": (["down0", "up0.a2.t0"], [300, 600], {}),
    "diffsim-dit": (["block0", "block2"], [850, 900], {}),
    "diffsim-c": (["down1.cross", "up0.cross"], [300, 600], {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sweep_is_one_pass_per_image_and_step(
    name, tmp_path, tiny_sd_path, tiny_sdxl_path, tiny_dit_path, tiny_ip_adapter_path
):
    model = {"diffsim-s-sdxl": tiny_sdxl_path, "diffsim-dit": tiny_dit_path, "diffsim-c": tiny_sd_path}[name]
    extra = {"ip_adapter": str(tiny_ip_adapter_path)} if name == "diffsim-c" else {}
    layers, steps, _ = CASES[name]
    metric = create_metric(
        name, model=str(model), layer=layers[0], size=SIZE, device="cpu", dtype="float32", batch_size=2, **extra
    )
    ts = load_dataset("sref", fx.style_bench(tmp_path, n_styles=3, per=2), seed=0, options={"n": 4})
    images = {p for t in ts.triplets for p in (t.anchor, t.positive, t.negative)}
    before = metric.backbone.passes
    r = sweep(metric, ts, layers, steps, tmp_path / "sw", EvalOptions(batch_size=2, n_boot=50))
    assert metric.backbone.passes - before == r["unet_calls"] == len(steps) * -(-len(images) // 2)
    with open(tmp_path / "sw" / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(x["layer"], int(x["step"])) for x in rows] == [(lay, s) for s in steps for lay in layers]
    one = metric.with_settings(layer=layers[1], step=steps[0])  # a grid cell = a plain 2AFC run
    ref = evaluate_2afc(one, ts, tmp_path / "one", EvalOptions(n_boot=50))
    cell = next(x for x in rows if x["layer"] == layers[1] and int(x["step"]) == steps[0])
    assert float(cell["accuracy"]) == ref["accuracy"]
