"""Markdown tables (like the paper's Table 1, with its numbers beside ours) and a bar chart from results."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import DatasetError
from .manifest import read_json
from .paper import DATASETS, TITLES, paper_row, paper_value


def load_results(paths: list[str | os.PathLike]) -> list[dict[str, Any]]:
    """Read ``results.json`` files (a folder means its ``results.json``)."""
    out = []
    for p in map(Path, paths):
        f = p / "results.json" if p.is_dir() else p
        r = read_json(f, "results file")
        if "dataset" not in r or "metric" not in r:
            raise DatasetError(f"{f} is not a diffsim results.json")
        out.append(r)
    return out


def _order(ds: str) -> int:
    return DATASETS.index(ds) if ds in DATASETS else len(DATASETS)


def markdown_table(results: list[dict[str, Any]]) -> str:
    """One row per (metric, dataset): ours with its 95% CI and n, the paper's number and the difference."""
    lines = ["| Benchmark | Metric | Protocol | Ours (%) | 95% CI | n | Paper (%) | Δ |",
             "|---|---|---|---:|---|---:|---:|---:|"]
    twoafc = sorted((r for r in results if "accuracy" in r), key=lambda r: (_order(r["dataset"]), r["metric"]["name"]))
    for r in twoafc:
        name = r["metric"]["name"]
        acc = 100 * r["accuracy"]
        lo, hi = (100 * x for x in r["ci95"])
        row = r["metric"].get("paper_row") or paper_row(name)
        paper = paper_value(name, r["dataset"], row)
        p = f"{paper:.2f} ({row})" if paper is not None else "–"
        d = f"{acc - paper:+.2f}" if paper is not None else "–"
        errs = f" ({r['n_errors']} err)" if r.get("n_errors") else ""
        lines.append(f"| {TITLES.get(r['dataset'], r['dataset'])} | {name} | {r.get('protocol_label', r['protocol'])} "
                     f"| {acc:.2f} | {lo:.2f}–{hi:.2f} | {r['n_triplets']}{errs} | {p} | {d} |")
    cons = [r for r in results if "mean_variance" in r]
    if cons:
        lines += ["", "| Benchmark | Metric | Mean variance (lower is more robust) | Videos |", "|---|---|---:|---:|"]
        for r in cons:
            lines.append(f"| {TITLES.get(r['dataset'], r['dataset'])} | {r['metric']['name']} "
                         f"| {r['mean_variance']:.6g} | {r['n_videos']} |")
    lines += ["", "Paper: Table 1 of Song et al., DiffSim (ICCV 2025); DiffSim = DiffSim-S SD 1.5 (Table 2 values for "
              "CUTE and IP). Accuracy is 2AFC; ties count "
              + ", ".join(sorted({str(r.get('tie_rule', '0.5')) for r in twoafc}) or ["0.5"]) + "."]
    return "\n".join(lines) + "\n"


def bar_chart(results: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Grouped bars per benchmark: our accuracy (with CI) and the paper's, per metric."""
    matplotlib = require("matplotlib", "plots", "the report chart")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = sorted((r for r in results if "accuracy" in r), key=lambda r: (_order(r["dataset"]), r["metric"]["name"]))
    labels = [f"{TITLES.get(r['dataset'], r['dataset'])}\n{r['metric']['name']}" for r in rs]
    ours = [100 * r["accuracy"] for r in rs]
    err = [[100 * (r["accuracy"] - r["ci95"][0]) for r in rs], [100 * (r["ci95"][1] - r["accuracy"]) for r in rs]]
    paper = [paper_value(r["metric"]["name"], r["dataset"], r["metric"].get("paper_row")) for r in rs]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rs) + 1), 3.5))
    x = list(range(len(rs)))
    ax.bar([i - 0.2 for i in x], ours, 0.4, yerr=err, capsize=3, label="ours")
    ax.bar([i + 0.2 for i in x], [p if p is not None else 0 for p in paper], 0.4, label="paper", alpha=0.6)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("2AFC accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
