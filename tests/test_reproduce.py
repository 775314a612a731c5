"""`diffsim reproduce` and `diffsim download` on fixture benchmarks and tiny random-weight models.

The fixture benchmarks (tests/bench_fixtures.py) are laid out under one root as `diffsim datasets download`
leaves them; ``--config`` points every metric row at a tiny model (tests/test_every_metric.py's table).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from diffsim import create_metric
from diffsim.bench import paper
from diffsim.bench.reproduce import plan_table1, run_plan, table1_jobs, verdict
from diffsim.bench.weights import SD_FILES, Need, allow_patterns, needs
from diffsim.cli.main import main
from diffsim.datasets import load_dataset

from . import bench_fixtures as bf
from .test_every_metric import tiny_overrides

ROWS = ["DiffSim", "CLIP", "LPIPS"]
PRESENT = ["nights", "tid2013", "sref"]


@pytest.fixture(scope="module")
def paths(tiny_sd_path, tiny_clip_path, tiny_dinov2_path) -> dict[str, str]:
    # Table 1 has no SDXL, DiT, IP-Adapter or peer row: every other model key maps to an unused path
    table = collections.defaultdict(lambda: "/nonexistent-unused")
    table.update({"sd": str(tiny_sd_path), "clip": str(tiny_clip_path), "dino": str(tiny_dinov2_path)})
    return table


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("benchmarks")
    bf.nights(base)
    bf.tid2013(base)
    bf.style_bench(base, "Sref")
    return base


@pytest.fixture(scope="module")
def config_file(paths, tmp_path_factory) -> Path:
    names = {j.metric for j in table1_jobs(rows=[*ROWS, "Ensemble"])}
    cfg = {n: tiny_overrides(n, paths) for n in names}
    f = tmp_path_factory.mktemp("cfg") / "tiny.json"
    f.write_text(json.dumps(cfg))
    return f


@pytest.fixture(scope="module")
def first_run(root, config_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "table1"
    argv = ["reproduce", "--root", str(root), "--out", str(out), "--rows", ",".join(ROWS), "-q"]
    argv += ["--config", str(config_file), "--n-boot", "200"]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    return code, buf.getvalue(), out


def test_report_has_every_cell_of_the_present_benchmarks(first_run):
    code, text, out = first_run
    assert code == 0, text
    report = json.loads((out / "report.json").read_text())
    got = {(c["row"], c["dataset"]) for c in report["cells"]}
    want = {(r, d) for r in ROWS for d in PRESENT if paper.TABLE1[r][d] is not None}
    assert got == want
    for c in report["cells"]:
        assert c["paper"] == paper.TABLE1[c["row"]][c["dataset"]]
        assert c["difference"] == pytest.approx(c["accuracy"] - c["paper"])
        lo, hi = c["ci95"]
        assert lo <= c["accuracy"] <= hi
        assert c["verdict"] == ("inside" if lo <= c["paper"] <= hi else "outside")
        assert c["n_triplets"] > 0
    diffsim_metrics = {c["dataset"]: c["metric"] for c in report["cells"] if c["row"] == "DiffSim"}
    assert diffsim_metrics == {"nights": "diffsim-s-nights", "tid2013": "diffsim-s-style", "sref": "diffsim-s-style"}
    md = (out / "report.md").read_text()
    assert "| DiffSim | NIGHTS | diffsim-s-nights |" in md and "86.52" in md
    assert (out / "report.png").stat().st_size > 1000


def test_missing_benchmarks_are_listed_with_the_fetch_command(first_run, root):
    _, text, out = first_run
    assert f"missing dreambench    diffsim datasets download dreambench --root {root}" in text
    assert "missing cute          manual:" in text and "purl.stanford.edu" in text
    report = json.loads((out / "report.json").read_text())
    assert {m["dataset"] for m in report["missing_datasets"]} == {"dreambench", "cute", "ipbench", "instantstyle"}


def test_accuracy_matches_a_straightforward_loop(first_run, root, paths):
    """CLIP on TID2013, recomputed one triplet at a time with metric.score (ties count 0.5)."""
    _, _, out = first_run
    report = json.loads((out / "report.json").read_text())
    cell = next(c for c in report["cells"] if c["row"] == "CLIP" and c["dataset"] == "tid2013")
    ts = load_dataset("tid2013", root / "tid2013", "paper", 2334)
    metric = create_metric("clip-i", **tiny_overrides("clip-i", paths))
    base = Path(ts.root)
    outcomes = []
    for t in ts.triplets:
        sp = metric.score(base / t.anchor, base / t.positive)
        sn = metric.score(base / t.anchor, base / t.negative)
        outcomes.append(1.0 if sp > sn else 0.5 if sp == sn else 0.0)
    assert cell["n_triplets"] == len(ts.triplets)
    assert cell["accuracy"] == pytest.approx(100 * sum(outcomes) / len(outcomes), abs=100 / len(outcomes) + 1e-9)


def test_a_finished_run_is_read_back_without_loading_a_model(first_run, root, config_file, monkeypatch):
    _, _, out = first_run
    before = json.loads((out / "report.json").read_text())

    def no_model(*a, **k):
        raise AssertionError("a finished job loaded a model")

    monkeypatch.setattr("diffsim.registry.create_metric", no_model)
    from diffsim.cli.reproduce import read_config

    plan = plan_table1(root, rows=ROWS, config=read_config(str(config_file)), seed=2334)
    again = run_plan(plan, out, n_boot=200)
    assert [(c["row"], c["dataset"], c["accuracy"]) for c in again["cells"]] == [
        (c["row"], c["dataset"], c["accuracy"]) for c in before["cells"]
    ]


def test_an_interrupted_cell_resumes_from_its_records(first_run, root, config_file):
    _, _, out = first_run
    cell = out / "sref" / "clip-i"
    before = json.loads((cell / "results.json").read_text())
    lines = (cell / "triplets.jsonl").read_text().splitlines(keepends=True)
    (cell / "triplets.jsonl").write_text("".join(lines[: len(lines) // 2]))  # as if killed halfway
    (cell / "results.json").unlink()
    from diffsim.cli.reproduce import read_config

    plan = plan_table1(root, datasets=["sref"], rows=["CLIP"], config=read_config(str(config_file)), seed=2334)
    report = run_plan(plan, out, n_boot=200)
    after = json.loads((cell / "results.json").read_text())
    assert after["resumed_triplets"] == len(lines) // 2
    assert after["accuracy"] == before["accuracy"] and report["cells"][0]["accuracy"] == 100 * before["accuracy"]


def test_offline_refuses_before_running_when_a_model_is_missing(root, config_file, tmp_path, capsys):
    cfg = json.loads(config_file.read_text())
    cfg["clip-i"]["model"] = "nobody/not-a-cached-model"
    f = tmp_path / "cfg.json"
    f.write_text(json.dumps(cfg))
    out = tmp_path / "out"
    argv = ["reproduce", "--root", str(root), "--out", str(out), "--rows", "CLIP", "--config", str(f), "--offline"]
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert "Hugging Face nobody/not-a-cached-model (clip-i): config.json" in cap.out
    assert "--offline: 1 model(s) are not on this machine" in cap.err and "diffsim download --table 1" in cap.err
    assert not out.exists()


def test_download_check_with_local_models(config_file, capsys):
    argv = ["download", "--config", str(config_file), "--check"]
    for m in ("diffsim-s-nights", "clip-i", "lpips-vgg-512"):
        argv += ["--metric", m]
    assert main(argv) == 0
    assert "model(s) present" in capsys.readouterr().out


def test_needs_and_allow_patterns_name_only_the_files_loaded():
    (sd,) = needs("diffsim-s-nights")
    assert sd.kind == "hub" and sd.repo == "stable-diffusion-v1-5/stable-diffusion-v1-5" and sd.files == SD_FILES
    repo_files = [
        "model_index.json",
        "safety_checker/model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "vae/diffusion_pytorch_model.bin",
        "text_encoder/model.safetensors",
        "v1-5-pruned.safetensors",
    ]
    pats = allow_patterns(sd, repo_files)
    assert "unet/diffusion_pytorch_model.safetensors" in pats and "vae/diffusion_pytorch_model.bin" in pats
    assert not [p for p in pats if "fp16" in p or "safety" in p or "pruned" in p or p.endswith("unet/" + "x")]
    assert "unet/diffusion_pytorch_model.bin" not in pats  # the safetensors file is enough
    kinds = {(n.kind, n.repo) for n in needs("ensemble")}
    assert kinds == {
        ("hub", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
        ("hub", "openai/clip-vit-base-patch32"),
        ("hub", "facebook/dinov2-small"),
    }
    assert {(n.kind, n.repo) for n in needs("lpips-vgg-512")} == {("torchvision", "vgg16"), ("package", "lpips")}
    assert needs("clip-i", {"model": "/some/local/folder"}) == [Need("folder", "/some/local/folder")]


def test_verdict_and_unknown_row():
    assert verdict(90.0, (88.0, 91.0)) == "inside" and verdict(92.0, (88.0, 91.0)) == "outside"
    assert verdict(None, (0.0, 1.0)) == "no paper number"
    assert main(["reproduce", "--root", ".", "--rows", "Nope", "--dry-run"]) == 2


def test_commands_in_the_reproduce_page_use_real_flags():
    """Every `diffsim ...` line of docs/reproduce.md names existing (sub)commands and options."""
    import shlex

    import click

    from diffsim.cli.main import cli

    page = Path(__file__).resolve().parents[1] / "docs" / "reproduce.md"
    cmds = [shlex.split(line.split("  #")[0]) for line in page.read_text().splitlines() if line.startswith("diffsim ")]
    assert len(cmds) >= 6
    for argv in cmds:
        cmd: click.Command = cli
        args = argv[1:]
        while isinstance(cmd, click.Group):
            cmd = cmd.commands[args.pop(0)]
        flags = {o for p in cmd.params for o in p.opts + p.secondary_opts}
        used = {a for a in args if a.startswith("-")}
        assert used <= flags, f"{' '.join(argv)}: unknown {sorted(used - flags)}"


def test_feature_cache_shares_a_configuration_between_cells(root, config_file, tmp_path):
    """CLIP row + Ensemble (whose members include the same CLIP) on TID2013 with --feature-cache: the CLIP
    features are written once (one folder per configuration: clip-i, diffsim-s, dinov2 = 3, not 4)."""
    from diffsim.cli.reproduce import read_config

    cfg = read_config(str(config_file))
    plan = plan_table1(root, datasets=["tid2013"], rows=["CLIP", "Ensemble"], config=cfg, seed=2334)
    assert [j.metric for j in plan.jobs] == ["clip-i", "ensemble"]
    cache = tmp_path / "features"
    run_plan(plan, tmp_path / "out", n_boot=50, feature_cache=cache)
    folders = [d for d in cache.iterdir() if d.is_dir()]
    ts = load_dataset("tid2013", root / "tid2013", "paper", 2334)
    images = {p for t in ts.triplets for p in (t.anchor, t.positive, t.negative)}
    assert len(folders) == 3
    counts = [len(list(d.glob("*.safetensors"))) for d in folders]
    assert all(0 < c <= len(images) for c in counts), counts  # one entry per distinct (preprocessed) image
