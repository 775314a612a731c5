"""`diffsim download --table 1`: prefetch every model file a table needs into the caches (or check them)."""

from __future__ import annotations

import click

from ..errors import ModelNotFoundError
from .reproduce import config_option, describe_missing_models, read_config


@click.command("download")
@click.option("--table", type=click.Choice(["1"]), default="1", show_default=True, help="The paper's table.")
@click.option("--metric", "metrics", multiple=True, help="Only this metric's files (repeatable).")
@config_option
@click.option("--check", is_flag=True, help="Only check: list what is missing (exit 2 if anything is).")
def download_models(table: str, metrics: tuple[str, ...], config_path: str | None, check: bool) -> None:
    """Download the model files Table TABLE needs (only those files) into the Hugging Face / torch caches."""
    from ..bench.reproduce import metric_overrides, table1_jobs
    from ..bench.weights import missing, needs, prefetch

    config = read_config(config_path)
    names = list(metrics) or list(dict.fromkeys(j.metric for j in table1_jobs()))
    all_needs = list(dict.fromkeys(n for m in names for n in needs(m, metric_overrides(m, config))))
    absent = missing(all_needs)
    if check:
        for line in describe_missing_models(absent):
            click.echo(f"missing: {line}")
        if absent:
            raise ModelNotFoundError(f"{len(absent)} of {len(all_needs)} model(s) are not on this machine")
        click.echo(f"all {len(all_needs)} model(s) present")
        return
    for need, _ in absent:
        click.echo(prefetch(need))
    click.echo(f"{len(all_needs)} model(s) ready ({len(all_needs) - len(absent)} were already present)")
