"""`diffsim report` tells runs apart (model, step, size, run folder where they differ) and skips sweeps."""

from __future__ import annotations

import json

from diffsim.bench.report import distinguishing, load_results, markdown_table, short_model
from diffsim.cli.main import main


def _result(folder, **cfg):
    res = {
        "dataset": "nights",
        "protocol": "paper",
        "protocol_label": "paper",
        "metric": {"name": "diffsim-s", "higher_is_better": True, "config": cfg},
        "accuracy": 0.9,
        "ci95": [0.88, 0.92],
        "n_triplets": 100,
        "n_errors": 0,
        "tie_rule": "0.5",
    }
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(res))
    return folder


def test_rows_name_what_differs(tmp_path, capsys):
    a = _result(tmp_path / "a", model="local:/m/one/tiny#stat:abcdef123", step=500, size=512, dtype="float32")
    b = _result(tmp_path / "b", model="local:/m/two/tiny#stat:999999000", step=500, size=512, dtype="float32")
    c = _result(tmp_path / "c", model="local:/m/two/tiny#stat:999999000", step=300, size=512, dtype="float32")
    d = _result(tmp_path / "d", model="local:/m/two/tiny#stat:999999000", step=300, size=512, dtype="float32")
    sweep = tmp_path / "s"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    code = main(
        [
            "report",
            str(a),
            str(b),
            str(c),
            str(d),
            str(sweep),
            "-o",
            str(tmp_path / "t.md"),
            "--chart",
            str(tmp_path / "c.png"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"note: {sweep} is a sweep" in err
    rows = [ln for ln in out.splitlines() if ln.startswith("| NIGHTS")]
    assert out.splitlines()[0].startswith("| Benchmark | Metric | Model | Step | Run | Protocol")
    assert len(rows) == 4 and len(set(rows)) == 4  # every row can be told apart
    assert "one/tiny#abcdef" in rows[0] and "two/tiny#999999" in rows[1] and "| 300 |" in rows[2]
    assert str(c) in out and str(d) in out  # c and d differ only by their run folder
    assert "Size" not in out.splitlines()[0] and "Dtype" not in out.splitlines()[0]  # same everywhere: no column
    assert f"Note: {sweep} is a sweep" in out
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_only_sweeps_is_one_line_error(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text("{}")
    assert main(["report", str(tmp_path)]) == 2
    assert "every input was skipped" in capsys.readouterr().err


def test_helpers(tmp_path):
    assert short_model("hub:org/name@0123456789abcdef0123456789abcdef01234567") == "org/name@0123456"
    assert short_model("stable-diffusion-v1-5/stable-diffusion-v1-5") == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    rs = load_results([_result(tmp_path / "x", size=256), _result(tmp_path / "y", size=512)])
    assert distinguishing(rs) == [("size", ["256", "512"])]
    assert "| 256 |" in markdown_table(rs)
