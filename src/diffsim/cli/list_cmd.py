"""`diffsim list [PATTERN]`: the registered metrics with backbone, defaults, polarity and paper."""

from __future__ import annotations

import fnmatch
import json

import click

from ..registry import list_aliases, list_metrics, metric_info


def _defaults(d: dict) -> str:
    return ", ".join(f"{k}={'/'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in d.items())


@click.command("list")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of entries instead of a table.")
def list_command(pattern: str, as_json: bool) -> None:
    """List registered metrics (glob PATTERN, e.g. 'diffsim-*')."""
    aliases = list_aliases()
    names = set(list_metrics(pattern)) | {t for a, t in aliases.items() if fnmatch.fnmatch(a, pattern)}
    infos = [metric_info(n) for n in sorted(names)]
    also = {i.name: sorted(a for a, t in aliases.items() if t == i.name) for i in infos}
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": i.name,
                        "aliases": also[i.name],
                        "backbone": i.backbone,
                        "defaults": i.defaults,
                        "higher_is_better": i.higher_is_better,
                        "measures": list(i.measures),
                        "paper": i.paper,
                        "paper_row": i.paper_row,
                        "description": i.description,
                        "settings": i.settings_names(),
                    }
                    for i in infos
                ],
                indent=2,
                default=str,
            )
        )
        return
    if not infos:
        click.echo(f"no metric matches {pattern!r}", err=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="diffsim metrics")
    for col in ("name", "backbone", "defaults", "polarity", "measures", "paper"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(
            i.name + "".join(f" (= {a})" for a in also[i.name]),
            i.backbone,
            _defaults(i.defaults),
            "higher=similar" if i.higher_is_better else "lower=similar",
            ", ".join(i.measures),
            i.paper,
        )
    Console(width=max(160, Console().width)).print(table)
