"""The `diffsim` command line."""
from __future__ import annotations

import logging
import sys

import click

from .._version import __version__
from ..errors import DiffSimError
from .bench import bench, consistency
from .demo_cmd import demo_command
from .dedup import dedup
from .index import index
from .layers import layers
from .list_cmd import list_command
from .map_cmd import map_command
from .matrix_cmd import matrix_command
from .report import report
from .retrieve import retrieve
from .score import score
from .sweep import sweep


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="diffsim")
@click.option("--verbose", "-v", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Visual similarity from the attention layers of pretrained diffusion models (DiffSim)."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    log = logging.getLogger("diffsim")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    if verbose == 0:  # the Hub's per-retry warnings: our error message already says what failed and why
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()


cli.add_command(score)
cli.add_command(layers)
cli.add_command(list_command)
cli.add_command(bench)
cli.add_command(consistency)
cli.add_command(sweep)
cli.add_command(report)
cli.add_command(map_command)
cli.add_command(matrix_command)
cli.add_command(demo_command)
cli.add_command(index)
cli.add_command(retrieve)
cli.add_command(dedup)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI; a DiffSimError becomes one line on stderr and exit code 2."""
    try:
        cli.main(args=argv, prog_name="diffsim", standalone_mode=False)
    except DiffSimError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


def run() -> None:
    sys.exit(main())
