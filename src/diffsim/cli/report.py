"""`diffsim report RESULTS...`: a Markdown table beside the paper's Table 1, and a bar chart."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write the Markdown here.")
@click.option("--chart", type=click.Path(dir_okay=False), default=None, help="Write a bar chart PNG here.")
def report(results: tuple[str, ...], output: str | None, chart: str | None) -> None:
    """Summarise results.json files (or run folders) as a Markdown table with the paper's numbers."""
    from ..bench.report import bar_chart, load_results, markdown_table

    skipped: list[str] = []
    rs = load_results(list(results), skipped)
    for note in skipped:
        click.echo(f"note: {note}", err=True)
    if not rs:
        from ..errors import DatasetError

        raise DatasetError("no results to report: every input was skipped")
    md = markdown_table(rs, skipped)
    if output:
        Path(output).write_text(md)
    click.echo(md, nl=False)
    if chart:
        bar_chart(rs, chart)
        click.echo(f"chart: {chart}")
