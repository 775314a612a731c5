"""`diffsim bench / consistency / report` end to end with a registered pixel metric."""

from __future__ import annotations

import json

import pytest

from diffsim.cli.main import main

from . import bench_fixtures as fx
from .pixel_metric import register_test_metrics


@pytest.fixture(autouse=True, scope="module")
def _metrics():
    register_test_metrics()


def test_bench_command_and_manifest_reuse(tmp_path, capsys):
    root = fx.ipbench(tmp_path)
    out = tmp_path / "run"
    rc = main(
        [
            "bench",
            "ipbench",
            "--root",
            str(root),
            "--metric",
            "test-pixel",
            "--protocol",
            "script",
            "--out",
            str(out),
            "-q",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "accuracy 100.00%" in text and "script" in text and "n=15" in text
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"] == "script" and res["metric"]["name"] == "test-pixel"
    rc = main(
        [
            "bench",
            "ipbench",
            "--triplets",
            str(out / "manifest.json"),
            "--metric",
            "test-pixel-distance",
            "--out",
            str(tmp_path / "run2"),
            "-q",
        ]
    )
    res2 = json.loads((tmp_path / "run2" / "results.json").read_text())
    assert rc == 0 and res2["n_triplets"] == 15 and res2["protocol"] == "script" and res2["accuracy"] == 1.0
    assert res2["metric"]["higher_is_better"] is False


def test_bench_seed_changes_triplets(tmp_path):
    root = fx.style_bench(tmp_path)
    for seed in ("1", "2"):
        assert (
            main(
                [
                    "bench",
                    "sref",
                    "-r",
                    str(root),
                    "--metric",
                    "test-pixel",
                    "--seed",
                    seed,
                    "-o",
                    "n=30",
                    "-O",
                    str(tmp_path / seed),
                    "-q",
                ]
            )
            == 0
        )
    m1, m2 = (json.loads((tmp_path / s / "manifest.json").read_text()) for s in ("1", "2"))
    assert m1["seed"] == 1 and m1["hash"] != m2["hash"]


def test_bad_root_is_one_line_exit_2(tmp_path, capsys):
    rc = main(["bench", "tid2013", "--root", str(tmp_path / "nope"), "--metric", "test-pixel", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and str(tmp_path / "nope") in err and "reference_images/" in err


def test_consistency_command(tmp_path, capsys):
    root = fx.tiktok(tmp_path)
    assert (
        main(
            [
                "consistency",
                "--root",
                str(root),
                "--frames",
                "5",
                "--metric",
                "test-pixel",
                "--out",
                str(tmp_path / "c"),
                "-q",
            ]
        )
        == 0
    )
    r = json.loads((tmp_path / "c" / "results.json").read_text())
    assert r["n_videos"] == 2 and r["protocol_options"]["frames"] == 5
    assert (
        main(["bench", "tiktok", "--root", str(root), "--metric", "test-pixel", "--out", str(tmp_path / "d"), "-q"])
        == 0
    )
    assert "mean variance" in capsys.readouterr().out


def test_report_table_and_chart(tmp_path, capsys):
    res = {
        "dataset": "ipbench",
        "protocol": "script",
        "protocol_label": "script (original_root=x)",
        "metric": {"name": "diffsim-s-instance", "higher_is_better": True, "config": {}},
        "accuracy": 0.9,
        "ci95": [0.88, 0.92],
        "n_triplets": 1495,
        "n_errors": 0,
        "tie_rule": "0.5",
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps(res))
    res2 = dict(
        res,
        dataset="nights",
        metric={"name": "test-pixel", "higher_is_better": True, "config": {}},
        accuracy=0.5,
        ci95=[0.4, 0.6],
        n_triplets=3,
    )
    (tmp_path / "b.json").write_text(json.dumps(res2))
    chart = tmp_path / "chart.png"
    assert (
        main(
            [
                "report",
                str(tmp_path / "a"),
                str(tmp_path / "b.json"),
                "-o",
                str(tmp_path / "t.md"),
                "--chart",
                str(chart),
            ]
        )
        == 0
    )
    md = (tmp_path / "t.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert rows[0].startswith("| Benchmark")
    assert rows[1].startswith("| NIGHTS | test-pixel") and rows[1].endswith("| – | – |")  # table order, no paper row
    assert (
        "| IP | diffsim-s-instance | script (original_root=x) | 90.00 | 88.00–92.00 | 1495 | 92.04 (DiffSim) | -2.04 |"
        in md
    )
    assert chart.stat().st_size > 1000
    assert main(["report", str(tmp_path / "missing.json")]) == 2
