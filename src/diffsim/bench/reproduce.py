"""Reproduce a table of the paper: every benchmark present under a root, every metric row with its preset.

``plan_table1(root)`` says what will run (jobs), which benchmarks are missing (with the command that
fetches each) and which model files are not on this machine; ``run_plan(plan, out)`` runs the jobs with the
2AFC harness (each image embedded once per configuration, resumable: a finished job is read back, an
interrupted one resumes from its records) and writes ``report.json``, ``report.md`` and ``report.png``:
our accuracy beside the paper's, the difference, the 95% bootstrap interval and a verdict (is the paper's
number inside our interval?).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..datasets import dataset_spec, load_dataset
from ..datasets.base import TripletSet
from ..datasets.sources import source
from ..errors import ConfigError, DiffSimError
from ..registry import list_metrics, metric_info
from . import paper
from .manifest import triplets_hash
from .weights import Need, missing, needs

logger = logging.getLogger(__name__)
TABLES = ("1",)


@dataclass(frozen=True)
class Job:
    """One cell of the table: a paper row on a benchmark, computed by a registered metric."""

    row: str
    dataset: str
    metric: str


@dataclass
class Plan:
    root: Path
    jobs: list[Job]
    present: dict[str, Path]  # dataset -> folder the loader reads
    missing_datasets: list[tuple[str, str]]  # (dataset, how to get it)
    needs: list[Need]
    missing_models: list[tuple[Need, list[str]]]
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0


def row_metric(row: str, dataset: str) -> str:
    """The registered metric for a Table 1 row on ``dataset`` (DiffSim: the benchmark's own preset)."""
    if row == "DiffSim":
        return dataset_spec(dataset).default_metric
    for name in list_metrics():
        info = metric_info(name)
        if info.paper_row == row:
            return name
    raise ConfigError(f"no registered metric declares paper row {row!r}")


def table1_jobs(datasets: list[str] | None = None, rows: list[str] | None = None) -> list[Job]:
    """Every (row, benchmark) cell of Table 1 that has a paper number, restricted to ``datasets``/``rows``."""
    for r in rows or []:
        if r not in paper.TABLE1:
            raise ConfigError(f"unknown Table 1 row {r!r}; rows: {', '.join(paper.TABLE1)}")
    for d in datasets or []:
        if d not in paper.DATASETS:
            raise ConfigError(f"{d!r} is not a Table 1 benchmark; they are: {', '.join(paper.DATASETS)}")
    jobs = []
    for row, values in paper.TABLE1.items():
        if rows and row not in rows:
            continue
        for ds in paper.DATASETS:
            if (datasets and ds not in datasets) or values.get(ds) is None:
                continue
            jobs.append(Job(row, ds, row_metric(row, ds)))
    return jobs


def dataset_folder(root: Path, dataset: str) -> Path:
    return root / source(dataset).folder


def fetch_hint(dataset: str, root: Path) -> str:
    """The command (or the manual steps) that puts ``dataset`` under ``root``."""
    src = source(dataset)
    if src.mode == "manual":
        return "manual: " + src.manual.replace("ROOT", str(root))
    return f"diffsim datasets download {dataset} --root {root}"


def _present(root: Path, dataset: str) -> bool:
    folder = dataset_folder(root, dataset)
    if dataset == "ipbench":
        return folder.is_dir() and (root / "IPA-bench").is_dir()
    return folder.is_dir()


def metric_overrides(name: str, config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Settings for metric ``name``: the config's ``"*"`` entries it has a setting for, then its own entry."""
    klass = metric_info(name).metric_class
    known = set(klass.Settings.names())
    votes = getattr(klass, "votes", False)  # an ensemble hands settings it lacks to every member
    common = {k: v for k, v in config.get("*", {}).items() if votes or k in known}
    return {**common, **config.get(name, {})}


def with_feature_cache(name: str, over: dict[str, Any], folder: str | os.PathLike) -> dict[str, Any]:
    """``over`` plus ``cache_dir=folder`` (unless set): cells with the same feature configuration (e.g. the
    CLIP row and the Ensemble's CLIP member) then embed each image once between them."""
    klass = metric_info(name).metric_class
    if "cache_dir" in over or not ("cache_dir" in klass.Settings.names() or getattr(klass, "votes", False)):
        return over
    return {**over, "cache_dir": str(folder)}


def plan_table1(
    root: str | os.PathLike,
    datasets: list[str] | None = None,
    rows: list[str] | None = None,
    config: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    cache_dir: str | None = None,
) -> Plan:
    """What a Table 1 run under ``root`` would do, and what it lacks (no model is loaded, no network)."""
    base = Path(root).expanduser().resolve()
    config = dict(config or {})
    all_jobs = table1_jobs(datasets, rows)
    wanted = list(dict.fromkeys(j.dataset for j in all_jobs))
    present = {d: dataset_folder(base, d) for d in wanted if _present(base, d)}
    lacking = [(d, fetch_hint(d, base)) for d in wanted if d not in present]
    jobs = [j for j in all_jobs if j.dataset in present]
    overrides = {m: metric_overrides(m, config) for m in dict.fromkeys(j.metric for j in jobs)}
    all_needs: list[Need] = []
    for m, over in overrides.items():
        all_needs += needs(m, over)
    all_needs = list(dict.fromkeys(all_needs))
    return Plan(base, jobs, present, lacking, all_needs, missing(all_needs, cache_dir), overrides, seed)


# ------------------------------------------------------------------------------------------ running
def verdict(paper_pct: float | None, ci_pct: tuple[float, float]) -> str:
    if paper_pct is None:
        return "no paper number"
    lo, hi = ci_pct
    return "inside" if lo - 1e-9 <= paper_pct <= hi + 1e-9 else "outside"


def _job_key(job: Job, over: dict[str, Any], ts: TripletSet) -> dict[str, Any]:
    return json.loads(
        json.dumps(
            {"job": job.__dict__, "overrides": over, "seed": ts.seed, "triplets": triplets_hash(ts.triplets)},
            sort_keys=True,
            default=str,
        )
    )


def _finished(out: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The results of a job already completed with the same key, else None."""
    try:
        done = json.loads((out / "job.json").read_text())
        results = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return None
    if done != key or results.get("n_triplets", 0) + results.get("n_errors", 0) != results.get("n_total"):
        return None
    return results


def run_plan(
    plan: Plan,
    out_dir: str | os.PathLike,
    n_boot: int = 1000,
    progress: bool = False,
    feature_cache: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run every job of ``plan`` (resumable) and write the report files into ``out_dir``; returns the report.

    Within a cell every image is embedded once (the harness's feature store). ``feature_cache``: an on-disk
    feature cache shared by all cells, so cells with the same feature configuration (the CLIP row and the
    Ensemble's CLIP member) embed each image once between them; it costs disk (SD 1.5 ``up0`` features are
    a few MB per image).
    """
    from ..registry import create_metric
    from .twoafc import EvalOptions, evaluate_2afc

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sets: dict[str, TripletSet] = {}
    for d, folder in plan.present.items():
        ts = load_dataset(d, folder, "paper", plan.seed)
        if not isinstance(ts, TripletSet):
            raise ConfigError(f"{d} is not a 2AFC benchmark; Table 1 holds 2AFC accuracies only")
        sets[d] = ts
    cells: list[dict[str, Any]] = []
    by_metric: dict[str, list[Job]] = {}
    for j in plan.jobs:
        by_metric.setdefault(j.metric, []).append(j)
    for name, jobs in by_metric.items():  # one model load per metric, all its benchmarks
        over = plan.overrides.get(name, {})
        metric = None
        for job in jobs:
            ts = sets[job.dataset]
            job_out = out / job.dataset / name
            key = _job_key(job, over, ts)
            results = _finished(job_out, key)
            if results is None:
                if metric is None:
                    built = with_feature_cache(name, over, feature_cache) if feature_cache else over
                    metric = create_metric(name, **built)
                opts = EvalOptions(n_boot=n_boot, progress=progress)
                results = evaluate_2afc(metric, ts, job_out, opts)
                (job_out / "job.json").write_text(json.dumps(key, indent=1))
            else:
                logger.info("%s on %s: finished earlier, read back", name, job.dataset)
            cells.append(_cell(job, results, job_out))
    order = {j: i for i, j in enumerate(plan.jobs)}
    cells.sort(key=lambda c: order[Job(c["row"], c["dataset"], c["metric"])])
    report = _report(plan, cells)
    write_report(report, out)
    return report


def _cell(job: Job, results: dict[str, Any], folder: Path) -> dict[str, Any]:
    acc = 100 * float(results["accuracy"])
    lo, hi = (100 * float(v) for v in results["ci95"])
    ref = paper.TABLE1[job.row].get(job.dataset)
    return {
        "row": job.row,
        "dataset": job.dataset,
        "metric": job.metric,
        "accuracy": acc,
        "ci95": [lo, hi],
        "paper": ref,
        "difference": None if ref is None else acc - ref,
        "verdict": verdict(ref, (lo, hi)),
        "n_triplets": results["n_triplets"],
        "paper_n": dataset_spec(job.dataset).paper_n,
        "n_errors": results.get("n_errors", 0),
        "results": str(folder / "results.json"),
        "_results": results,
    }


def _report(plan: Plan, cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "table": "1",
        "root": str(plan.root),
        "seed": plan.seed,
        "cells": cells,
        "missing_datasets": [{"dataset": d, "fetch": h} for d, h in plan.missing_datasets],
        "summary": {
            "cells": len(cells),
            "inside": sum(c["verdict"] == "inside" for c in cells),
            "outside": sum(c["verdict"] == "outside" for c in cells),
        },
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table (one line per cell) with the missing benchmarks below it."""
    lines = [
        f"# Table 1 reproduction ({report['root']})",
        "",
        "| Row | Benchmark | Metric | Ours (%) | 95% CI | Paper (%) | Difference | Verdict | n (paper n) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["cells"]:
        paper_txt = "n/a" if c["paper"] is None else f"{c['paper']:.2f}"
        diff = "n/a" if c["difference"] is None else f"{c['difference']:+.2f}"
        lo, hi = c["ci95"]
        lines.append(
            f"| {c['row']} | {paper.TITLES.get(c['dataset'], c['dataset'])} | {c['metric']} | {c['accuracy']:.2f} | "
            f"{lo:.2f}-{hi:.2f} | {paper_txt} | {diff} | {c['verdict']} | {c['n_triplets']} ({c['paper_n']}) |"
        )
    s = report["summary"]
    lines += ["", f"{s['inside']} of {s['cells']} paper numbers lie inside our 95% bootstrap interval."]
    if report["missing_datasets"]:
        lines += ["", "Not run (benchmark missing):", ""]
        lines += [f"- {m['dataset']}: {m['fetch']}" for m in report["missing_datasets"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> None:
    """``report.json``, ``report.md`` and (with matplotlib) ``report.png`` in ``out``."""
    results = [c.pop("_results") for c in report["cells"] if "_results" in c]
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(markdown(report))
    if results:
        try:
            from .report import bar_chart

            bar_chart(results, out / "report.png")
        except (ImportError, DiffSimError) as exc:  # matplotlib missing: the tables are still written
            logger.warning("no figure: %s", exc)
