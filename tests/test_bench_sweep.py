"""Sweeps with the tiny DiffSim-S: one U-Net pass per (image, timestep) for all layers; same scores as bench."""

from __future__ import annotations

import csv

from diffsim.bench import EvalOptions, evaluate_2afc
from diffsim.bench.sweep import sweep
from diffsim.datasets import load_dataset

from . import bench_fixtures as fx

LAYERS = ["down1", "mid", "up0"]
STEPS = [300, 700]


def test_sweep_one_pass_per_image_and_step(tmp_path, tiny_metric):
    ts = load_dataset("sref", fx.style_bench(tmp_path, n_styles=3, per=2), seed=0, options={"n": 8})
    images = {p for t in ts.triplets for p in (t.anchor, t.positive, t.negative)}
    metric = tiny_metric.with_settings(batch_size=1)
    before = metric.backbone.passes
    r = sweep(metric, ts, LAYERS, STEPS, tmp_path / "sw", EvalOptions(batch_size=1, n_boot=100))
    calls = metric.backbone.passes - before
    assert calls == r["unet_calls"] == len(images) * len(STEPS)  # naive: len(images) * 3 layers * 2 steps
    assert r["images_vae_encoded"] == len(images)
    with open(tmp_path / "sw" / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(x["layer"], int(x["step"])) for x in rows] == [(lay, s) for s in STEPS for lay in LAYERS]
    assert (tmp_path / "sw" / "heatmap.png").stat().st_size > 1000
    # the grid cell equals a plain bench run with that one setting
    single = tiny_metric.with_settings(layer="mid", step=700)
    ref = evaluate_2afc(single, ts, tmp_path / "one", EvalOptions(n_boot=100))
    cell = next(x for x in rows if x["layer"] == "mid" and x["step"] == "700")
    assert float(cell["accuracy"]) == ref["accuracy"]
    # a second run finds every step done: no U-Net call at all
    before = metric.backbone.passes
    sweep(metric, ts, LAYERS, STEPS, tmp_path / "sw", EvalOptions(batch_size=1, n_boot=100))
    assert metric.backbone.passes == before
