"""Markdown tables (like the paper's Table 1, with its numbers beside ours) and a bar chart from results."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import DatasetError
from .manifest import read_json
from .paper import DATASETS, TITLES, paper_row, paper_value


def load_results(paths: list[str | os.PathLike], skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """Read ``results.json`` files (a folder means its ``results.json``).

    A sweep (a folder with ``sweep.json`` and no ``results.json``, or a ``sweep.json`` file) is not a
    single result: it is left out, with a note appended to ``skipped``. Each result gets ``_run``: the
    run folder it came from (shown when it is what tells two rows apart).
    """
    out = []
    for p in map(Path, paths):
        f = p / "results.json" if p.is_dir() else p
        sweep = p / "sweep.json" if p.is_dir() else p if p.name == "sweep.json" else None
        if sweep is not None and sweep.is_file() and not (p.is_dir() and f.is_file()):
            if skipped is not None:
                skipped.append(f"{p} is a sweep (sweep.json, sweep.csv, heatmap.png): not a single result, skipped")
            continue
        r = read_json(f, "results file")
        if not isinstance(r, dict) or "dataset" not in r or "metric" not in r:
            raise DatasetError(f"{f} is not a diffsim results.json")
        r["_run"] = str(f.parent)
        out.append(r)
    return out


# settings that can tell two runs of one metric apart, in display order: (column, config keys)
DETAILS = (
    ("model", ("model", "backbone")),
    ("layer", ("layer_names", "layers", "layer")),
    ("step", ("step",)),
    ("timestep", ("timestep",)),
    ("size", ("size",)),
    ("prompt", ("prompt",)),
    ("similarity", ("similarity",)),
    ("dtype", ("dtype",)),
)


def short_model(identity: str) -> str:
    """A readable model name from an identity: ``org/name@1a2b3c4`` or ``.../parent/folder#digest6``."""
    if identity.startswith("hub:"):
        name, _, commit = identity[4:].partition("@")
        return f"{name}@{commit[:7]}" if commit else name
    if identity.startswith("local:"):
        path, _, digest = identity[6:].partition("#")
        parts = Path(path).parts
        tail = "/".join(parts[-2:]) if len(parts) > 2 else path
        return f"{tail}#{digest.rpartition(':')[2][:6]}" if digest else tail
    return identity


def _detail(r: dict[str, Any], keys: tuple[str, ...]) -> str:
    cfg = r.get("metric", {}).get("config", {}) or {}
    for k in keys:
        if k in cfg and cfg[k] is not None:
            v = cfg[k]
            v = ",".join(map(str, v)) if isinstance(v, list) else str(v)
            return short_model(v) if keys[0] == "model" else v
    return ""


def distinguishing(results: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The columns (and each row's value) needed to tell the results apart: settings that differ between
    them, then the run folder if two rows of one benchmark and metric still look the same."""
    cols: list[tuple[str, list[str]]] = []
    for name, keys in DETAILS:
        vals = [_detail(r, keys) for r in results]
        if name == "timestep" and any(c[0] == "step" for c in cols):
            continue  # the step column already tells them apart
        if len(set(vals)) > 1:
            cols.append((name, vals))
    seen = [
        (r["dataset"], r["metric"]["name"], r.get("protocol"), *(c[1][i] for c in cols)) for i, r in enumerate(results)
    ]
    if len(set(seen)) < len(seen):
        cols.append(("run", [r.get("_run", "") for r in results]))
    return cols


def _order(ds: str) -> int:
    return DATASETS.index(ds) if ds in DATASETS else len(DATASETS)


def _sorted(results: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted((r for r in results if key in r), key=lambda r: (_order(r["dataset"]), r["metric"]["name"]))


def markdown_table(results: list[dict[str, Any]], notes: list[str] | None = None) -> str:
    """One row per result: ours with its 95% CI and n, the paper's number and the difference.

    Columns for model, layer, step, size... (and the run folder) are added where they differ between the
    results, so that every row can be told apart. ``notes`` (e.g. skipped sweeps) are listed below.
    """
    twoafc = _sorted(results, "accuracy")
    extra = distinguishing(twoafc)
    head = "| Benchmark | Metric | " + "".join(f"{c.capitalize()} | " for c, _ in extra)
    lines = [
        head + "Protocol | Ours (%) | 95% CI | n | Paper (%) | Δ |",
        "|---|---|" + "---|" * len(extra) + "---|---:|---|---:|---:|---:|",
    ]
    for i, r in enumerate(twoafc):
        name = r["metric"]["name"]
        acc = 100 * r["accuracy"]
        lo, hi = (100 * x for x in r["ci95"])
        row = r["metric"].get("paper_row") or paper_row(name)
        paper = paper_value(name, r["dataset"], row)
        p = f"{paper:.2f} ({row})" if paper is not None else "–"
        d = f"{acc - paper:+.2f}" if paper is not None else "–"
        errs = f" ({r['n_errors']} err)" if r.get("n_errors") else ""
        cells = "".join(f"{vals[i]} | " for _, vals in extra)
        lines.append(
            f"| {TITLES.get(r['dataset'], r['dataset'])} | {name} | {cells}"
            f"{r.get('protocol_label', r['protocol'])} "
            f"| {acc:.2f} | {lo:.2f}–{hi:.2f} | {r['n_triplets']}{errs} | {p} | {d} |"
        )
    cons = _sorted(results, "mean_variance")
    if cons:
        cextra = distinguishing(cons)
        lines += [
            "",
            "| Benchmark | Metric | "
            + "".join(f"{c.capitalize()} | " for c, _ in cextra)
            + "Mean variance (lower is more robust) | Videos |",
            "|---|---|" + "---|" * len(cextra) + "---:|---:|",
        ]
        for i, r in enumerate(cons):
            cells = "".join(f"{vals[i]} | " for _, vals in cextra)
            lines.append(
                f"| {TITLES.get(r['dataset'], r['dataset'])} | {r['metric']['name']} | {cells}"
                f"{r['mean_variance']:.6g} | {r['n_videos']} |"
            )
    lines += [
        "",
        "Paper: Table 1 of Song et al., DiffSim (ICCV 2025); DiffSim = DiffSim-S SD 1.5 (Table 2 values for "
        "CUTE and IP). Accuracy is 2AFC; ties count "
        + ", ".join(sorted({str(r.get("tie_rule", "0.5")) for r in twoafc}) or ["0.5"])
        + ".",
    ]
    for note in notes or []:
        lines.append(f"Note: {note}.")
    return "\n".join(lines) + "\n"


def bar_chart(results: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Grouped bars per benchmark: our accuracy (with CI) and the paper's, per metric."""
    matplotlib = require("matplotlib", "plots", "the report chart")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = _sorted(results, "accuracy")
    extra = distinguishing(rs)
    labels = [
        f"{TITLES.get(r['dataset'], r['dataset'])}\n{r['metric']['name']}"
        + "".join(f"\n{c} {vals[i]}" for c, vals in extra)
        for i, r in enumerate(rs)
    ]
    ours = [100 * r["accuracy"] for r in rs]
    err = [[100 * (r["accuracy"] - r["ci95"][0]) for r in rs], [100 * (r["ci95"][1] - r["accuracy"]) for r in rs]]
    paper = [paper_value(r["metric"]["name"], r["dataset"], r["metric"].get("paper_row")) for r in rs]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rs) + 1), 3.5 + 0.25 * len(extra)))
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
