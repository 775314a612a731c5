"""The 2AFC / consistency harness with a cheap pixel metric: polarity, ties, resume, errors, manifests."""

from __future__ import annotations

import json
import os

import pytest

from diffsim.bench import EvalOptions, evaluate_2afc, evaluate_consistency, load_manifest, outcome
from diffsim.bench.stats import bootstrap_ci
from diffsim.datasets import load_dataset
from diffsim.errors import DatasetError, ImageError

from . import bench_fixtures as fx
from .pixel_metric import ConstantMetric, PixelMetric


def quiet(**kw) -> EvalOptions:
    return EvalOptions(n_boot=200, **kw)


def test_outcome_polarity_and_ties():
    assert outcome(0.9, 0.1, True) == 1 and outcome(0.9, 0.1, False) == 0
    assert outcome(0.1, 0.9, False) == 1 and outcome(0.1, 0.9, True) == 0
    assert outcome(0.5, 0.5, True) == 0.5 and outcome(0.5, 0.5, True, strict_ties=True) == 0
    lo, hi = bootstrap_ci([1, 0] * 50, n_boot=500)
    assert 0.35 < lo < 0.5 < hi < 0.65
    assert bootstrap_ci([1] * 10) == (1.0, 1.0)


@pytest.mark.parametrize("distance", [False, True])
def test_accuracy_uses_polarity(tmp_path, distance):
    ts = load_dataset("ipbench", fx.ipbench(tmp_path), protocol="script")
    r = evaluate_2afc(PixelMetric(distance=distance), ts, tmp_path / "run", quiet())
    assert r["accuracy"] == 1.0 and r["n_triplets"] == 15 and r["ci95"] == [1.0, 1.0]
    assert r["polarity"] == ("lower is closer" if distance else "higher is closer")
    bad = evaluate_2afc(PixelMetric(distance=distance, invert=True), ts, tmp_path / "inv", quiet())
    assert bad["accuracy"] == 0.0


def test_ties(tmp_path):
    ts = load_dataset("ipbench", fx.ipbench(tmp_path), protocol="script")
    r = evaluate_2afc(ConstantMetric(), ts, tmp_path / "a", quiet())
    assert r["accuracy"] == 0.5 and r["ties"] == 15 and r["tie_rule"] == "0.5"
    s = evaluate_2afc(ConstantMetric(), ts, tmp_path / "b", quiet(strict_ties=True))
    assert s["accuracy"] == 0.0 and "strict" in s["tie_rule"]


def test_results_json_and_each_image_embedded_once(tmp_path):
    ts = load_dataset("sref", fx.style_bench(tmp_path), seed=1, options={"n": 300})
    m = PixelMetric()
    r = evaluate_2afc(m, ts, tmp_path / "run", quiet(chunk_size=64, batch_size=7))
    distinct = {p for t in ts.triplets for p in (t.anchor, t.positive, t.negative)}
    assert len(m.images_seen) == len(set(m.images_seen)) == len(distinct) == r["images_embedded"]
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    for k in (
        "dataset",
        "protocol",
        "metric",
        "accuracy",
        "ci95",
        "n_triplets",
        "seed",
        "package_version",
        "git_commit",
        "wall_time_s",
        "images_embedded",
    ):
        assert k in on_disk
    assert on_disk["metric"]["config"]["metric"] == "test-pixel" and on_disk["seed"] == 1
    lines = (tmp_path / "run" / "triplets.jsonl").read_text().splitlines()
    assert len(lines) == 300 and {"s_pos", "s_neg", "outcome", "anchor"} <= set(json.loads(lines[0]))


def test_memory_budget_evicts_and_counts_reembedding(tmp_path):
    ts = load_dataset("sref", fx.style_bench(tmp_path), seed=1, options={"n": 100})
    m = PixelMetric()
    r = evaluate_2afc(m, ts, tmp_path / "run", quiet(chunk_size=10, max_feature_bytes=0))
    assert r["accuracy"] == 1.0 and r["images_reembedded"] > 0
    assert len(m.images_seen) == r["images_embedded"] + r["images_reembedded"]


class Interrupting(PixelMetric):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def embed(self, images, prompt=None, **kw):
        if self.embed_calls >= self.after:
            raise KeyboardInterrupt
        return super().embed(images, prompt, **kw)


def test_resume_after_interrupt(tmp_path):
    ts = load_dataset("sref", fx.style_bench(tmp_path, n_styles=8, per=6), seed=3, options={"n": 120})
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        evaluate_2afc(Interrupting(after=3), ts, out, quiet(chunk_size=5, batch_size=40))
    done = (out / "triplets.jsonl").read_text().splitlines()
    assert 0 < len(done) < 120 and not (out / "results.json").exists()
    with open(out / "triplets.jsonl", "a") as fh:  # a torn line from a crash mid-write
        fh.write('{"id": "99", "anch')
    m = PixelMetric()
    r = evaluate_2afc(m, ts, out, quiet(chunk_size=20))
    assert r["n_triplets"] == 120 and r["resumed_triplets"] == len(done) and r["accuracy"] == 1.0
    scored_again = {json.loads(x)["id"] for x in (out / "triplets.jsonl").read_text().splitlines()[len(done) :]}
    assert scored_again == {t.id for t in ts.triplets} - {json.loads(x)["id"] for x in done}
    # a different metric in the same folder is refused, --overwrite starts again
    with pytest.raises(Exception, match="another run"):
        evaluate_2afc(PixelMetric(distance=True), ts, out, quiet())
    assert evaluate_2afc(PixelMetric(distance=True), ts, out, quiet(overwrite=True))["resumed_triplets"] == 0


def test_missing_and_corrupt_images_are_recorded(tmp_path):
    root = fx.ipbench(tmp_path)
    (root / "doraemon" / "0.3.png").write_bytes(b"not a png")
    ts = load_dataset("ipbench", root, protocol="script")
    (root / "pikachu" / "0.6.png").unlink()  # listed in the triplets, gone when they run
    r = evaluate_2afc(PixelMetric(), ts, tmp_path / "run", quiet(batch_size=50))
    # pikachu loses (1.0,0.6) and (0.6,0.3); doraemon loses (0.6,0.3) and (0.3,0.2)
    assert r["n_errors"] == 4 and r["n_triplets"] == 11 and r["n_total"] == 15 and r["accuracy"] == 1.0
    paths = {e["path"] for e in r["errors"]}
    assert paths == {"pikachu/0.6.png", "doraemon/0.3.png"}
    with pytest.raises(ImageError):
        evaluate_2afc(PixelMetric(), ts, tmp_path / "strict", quiet(strict=True))


def test_prompts_reach_metrics_that_accept_them(tmp_path):
    ts = load_dataset("nights", fx.nights(tmp_path), protocol="script")
    m = PixelMetric()
    evaluate_2afc(m, ts, tmp_path / "a", quiet())
    assert set(m.prompts) == {"An image of a golden retriever"}
    m2 = PixelMetric()
    r = evaluate_2afc(m2, ts, tmp_path / "b", quiet(use_prompts=False))
    assert set(m2.prompts) == {None} and r["dataset_prompts"] is False


def test_manifest_round_trip(tmp_path):
    ts = load_dataset("cute", fx.cute(tmp_path), seed=9)
    evaluate_2afc(PixelMetric(), ts, tmp_path / "run", quiet())
    back = load_manifest(tmp_path / "run" / "manifest.json")
    assert back.triplets == ts.triplets and back.seed == 9 and back.dataset == "cute"
    r = evaluate_2afc(PixelMetric(distance=True), back, tmp_path / "run2", quiet())
    assert r["n_triplets"] == len(ts.triplets)
    doc = json.loads((tmp_path / "run" / "manifest.json").read_text())
    doc["triplets"][0]["positive"] = doc["triplets"][0]["negative"]
    (tmp_path / "edited.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="edited"):
        load_manifest(tmp_path / "edited.json")


def test_consistency_variance(tmp_path):
    vs = load_dataset("tiktok", fx.tiktok(tmp_path))
    r = evaluate_consistency(PixelMetric(), vs, tmp_path / "run", quiet())
    assert r["n_videos"] == 2 and r["mean_variance"] > 0
    recs = [json.loads(x) for x in (tmp_path / "run" / "videos.jsonl").read_text().splitlines()]
    assert [len(x["scores"]) for x in recs] == [9, 9]
    # video 2 drifts twice as fast as video 1: larger variance
    assert recs[1]["variance"] > recs[0]["variance"]
    import numpy as np

    assert r["mean_variance"] == pytest.approx(np.mean([np.var(x["scores"]) for x in recs]))


class _LoudInverted(PixelMetric):
    """A broken metric whose scores are 1000x larger than the others' (it would dominate a score mean)."""

    def compare(self, a, b):
        return 1000 * super().compare(a, b)


def test_voting_metrics_are_scored_by_their_vote(tmp_path):
    from diffsim.metrics.ensemble import Ensemble

    ts = load_dataset("ipbench", fx.ipbench(tmp_path), protocol="script")
    ens = Ensemble([PixelMetric(), PixelMetric(distance=True), _LoudInverted(invert=True)])
    r = evaluate_2afc(ens, ts, tmp_path / "ens", quiet())
    assert r["accuracy"] == 1.0  # 2 of 3 members are right on every triplet
    # the mean of member scores (its compare) is dominated by the loud broken member: it would pick the negative
    t0 = ts.triplets[0]
    f = ens.embed([os.path.join(ts.root, p) for p in (t0.anchor, t0.positive, t0.negative)])
    assert ens.compare(f[0], f[1]).item() < ens.compare(f[0], f[2]).item()
    tied = Ensemble([PixelMetric(), PixelMetric(invert=True), ConstantMetric()])
    t = evaluate_2afc(tied, ts, tmp_path / "tie", quiet(strict_ties=True))
    assert t["accuracy"] == 0.0 and t["ties"] == 15  # +1, -1, abstain: a split vote is a tie
