"""`diffsim demo`: the local web app (extra ``diffsim-metric[demo]``)."""

from __future__ import annotations

import click

from .numbers import PORT
from .options import build_metric, diffsim_options


@click.command("demo")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to serve on (0.0.0.0 makes it reachable from other machines).",
)
@click.option("--port", type=PORT, default=7860, show_default=True, help="Port to serve on.")
@click.option(
    "--examples",
    "examples",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of example images offered as clickable rows in every tab (searched recursively; images of "
    "one scene share the name part before '_'). Default: the repository's examples/ when run from a checkout.",
)
@diffsim_options
@click.pass_context
def demo_command(
    ctx: click.Context, host: str, port: int, examples: str | None, metric_name: str | None, **opts
) -> None:
    """Serve a web app: pair maps and score, a ranked grid against a reference, and 2AFC.

    The model, layer, step and other options are the defaults of the app; layer and step can be changed
    in the page. Stop it with Ctrl+C.
    """
    from .._optional import require

    require("gradio", "demo", "diffsim demo")
    require("matplotlib", "plots", "diffsim demo")
    from ..app import Engine, launch

    engine = Engine(build_metric(ctx, metric_name, "diffsim-s", opts))
    click.echo(f"serving on http://{host}:{port}/ (Ctrl+C to stop)", err=True)
    launch(engine, host, port, block=True, quiet=True, examples=examples if examples is not None else "repo")
