"""`diffsim reproduce --root DIR`: the paper's Table 1 on every benchmark present, with a report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, ModelNotFoundError
from .numbers import COUNT, SEED


def read_config(path: str | None, device: str | None = None, dtype: str | None = None) -> dict[str, dict[str, Any]]:
    """``{metric: settings}`` from a JSON file (``"*"``: settings for every metric that has them)."""
    config: dict[str, dict[str, Any]] = {}
    if path:
        try:
            config = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read --config {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ConfigError(f"--config {path} is not valid JSON: {exc}") from None
        if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
            raise ConfigError(f'--config {path} must be a JSON object {{"metric": {{"setting": value}}}}')
    common = dict(config.get("*", {}))
    common.update({k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None})
    if common:
        config["*"] = common
    return config


def split_list(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def describe_missing_models(missing: list) -> list[str]:
    return [f"{need.label()} ({need.why}): {', '.join(files)}" for need, files in missing]


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help='JSON {"metric": {"setting": value}, "*": {...}}: per-metric settings (e.g. a local model folder).',
)


@click.command("reproduce")
@click.option("--root", "-r", type=click.Path(file_okay=False), required=True, help="Folder holding the benchmarks.")
@click.option("--table", type=click.Choice(["1"]), default="1", show_default=True, help="The paper's table.")
@click.option(
    "--out",
    "-O",
    "out_dir",
    type=click.Path(file_okay=False),
    default="runs/reproduce-table1",
    show_default=True,
    help="Output folder (runs resume from it).",
)
@click.option("--datasets", default=None, help="Comma-separated benchmarks (default: every one present).")
@click.option("--rows", default=None, help='Comma-separated Table 1 rows, e.g. "DiffSim,CLIP" (default: all).')
@config_option
@click.option("--device", default=None, help="Device for every metric, e.g. cuda, cuda:1, cpu.")
@click.option("--dtype", default=None, help="Dtype for every metric that has one, e.g. float16.")
@click.option("--seed", type=SEED, default=2334, show_default=True, help="Triplet sampling seed (the authors' 2334).")
@click.option("--n-boot", type=COUNT, default=1000, show_default=True, help="Bootstrap resamples for the intervals.")
@click.option(
    "--feature-cache",
    type=click.Path(file_okay=False),
    default=None,
    help="On-disk feature cache shared by all cells (same configuration: embedded once; SD features: MBs/image).",
)
@click.option("--offline", is_flag=True, help="Check every model file is cached first; never use the network.")
@click.option("--dry-run", is_flag=True, help="Print the plan (and what is missing) and stop.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def reproduce(
    root: str,
    table: str,
    out_dir: str,
    datasets: str | None,
    rows: str | None,
    config_path: str | None,
    device: str | None,
    dtype: str | None,
    seed: int,
    n_boot: int,
    feature_cache: str | None,
    offline: bool,
    dry_run: bool,
    quiet: bool,
) -> None:
    """Run Table 1 of the paper on every benchmark found under ROOT and write a report.

    Every metric row runs with its registry preset; each image is embedded once per configuration; an
    interrupted run resumes when the same command is run again. The report (OUT/report.md, .json, .png)
    gives our accuracy beside the paper's, the difference, a 95% bootstrap interval and whether the
    paper's number lies inside it. Missing benchmarks and model files are listed before anything runs.
    """
    from ..bench.reproduce import plan_table1, run_plan

    config = read_config(config_path, device, dtype)
    plan = plan_table1(root, split_list(datasets), split_list(rows), config, seed)
    click.echo(f"Table {table}: {len(plan.jobs)} cell(s) on {len(plan.present)} benchmark(s) under {plan.root}")
    for ds, folder in plan.present.items():
        click.echo(f"  found   {ds:<13} {folder}")
    for ds, hint in plan.missing_datasets:
        click.echo(f"  missing {ds:<13} {hint}")
    if plan.missing_models:
        head = "missing model files" if offline else "model files not cached yet (downloaded on first use)"
        click.echo(f"{head}; fetch them with `diffsim download --table {table}`:")
        for line in describe_missing_models(plan.missing_models):
            click.echo(f"  {line}")
    if offline and plan.missing_models:
        raise ModelNotFoundError(
            f"--offline: {len(plan.missing_models)} model(s) are not on this machine (listed above); "
            f"run `diffsim download --table {table}` while online first"
        )
    if not plan.jobs:
        raise ConfigError(f"no Table {table} benchmark found under {plan.root}; fetch them with the commands above")
    if dry_run:
        for j in plan.jobs:
            click.echo(f"  would run {j.row:<12} {j.dataset:<13} {j.metric}")
        return
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    report = run_plan(plan, out_dir, n_boot=n_boot, progress=not quiet, feature_cache=feature_cache)
    s = report["summary"]
    click.echo(f"{s['inside']} of {s['cells']} paper numbers inside our 95% interval; {s['outside']} outside")
    click.echo(f"report: {Path(out_dir) / 'report.md'}")
