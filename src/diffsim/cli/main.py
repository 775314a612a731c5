"""The `diffsim` command line."""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click

from .._version import __version__
from ..bounds import is_out_of_memory, out_of_memory
from ..errors import DiffSimError, use_cli_hints
from .bench import bench, consistency
from .datasets_cmd import datasets_group
from .dedup import dedup
from .demo_cmd import demo_command
from .download import download_models
from .index import index
from .layers import layers
from .list_cmd import list_command
from .map_cmd import map_command
from .matrix_cmd import matrix_command
from .numbers import COUNT
from .report import report
from .reproduce import reproduce
from .retrieve import retrieve
from .score import score
from .state import STATE
from .sweep import sweep


class _StderrHandler(logging.StreamHandler):
    """Logs to whatever ``sys.stderr`` is now (not the stream of the first call: main() may run many times)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="diffsim")
@click.option("--verbose", "-v", count=True, help="More log output (-v info, -vv debug); -v also shows tracebacks.")
@click.option(
    "--max-pixels",
    type=COUNT,
    default=None,
    metavar="N",
    help="Refuse image files larger than N pixels (width x height). [default: $DIFFSIM_MAX_PIXELS or 100000000]",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, max_pixels: int | None) -> None:
    """Visual similarity from the attention layers of pretrained diffusion models (DiffSim)."""
    STATE.update(verbose=verbose, command=ctx.invoked_subcommand)
    if max_pixels is not None:
        from ..images import set_max_pixels

        set_max_pixels(max_pixels)
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    log = logging.getLogger("diffsim")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    if verbose == 0:  # the Hub's per-retry warnings: our error message already says what failed and why
        if "huggingface_hub" in sys.modules:
            from huggingface_hub.utils import logging as hub_logging

            hub_logging.set_verbosity_error()
        else:  # read when huggingface_hub is first imported (not imported here: `diffsim list` stays fast)
            os.environ.setdefault("HF_HUB_VERBOSITY", "error")


RESUMABLE = ("bench", "sweep", "consistency", "reproduce", "index build")

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
cli.add_command(datasets_group)
cli.add_command(reproduce)
cli.add_command(download_models)


def _interrupted() -> str:
    if STATE["command"] in RESUMABLE:
        return (
            "interrupted: finished work is saved in the output folder; rerun the same command to resume "
            "where it stopped"
        )
    return "interrupted"


def _fail(message: str, code: int) -> int:
    if STATE["verbose"]:
        traceback.print_exc()
    click.echo(f"error: {message}", err=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI. Expected failures print one line ``error: ...`` on stderr and return 2
    (``-v`` adds the traceback); an unexpected exception prints one line too and returns 1."""
    STATE.update(verbose=0, command=None)
    use_cli_hints(True)
    try:
        cli.main(args=argv, prog_name="diffsim", standalone_mode=False)
    except DiffSimError as exc:
        return _fail(exc.for_cli(), 2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(_interrupted(), err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except OSError as exc:  # disk full, permission denied, a folder where a file was expected...
        return _fail(_os_message(exc), 2)
    except Exception as exc:  # a bug: still one line, the traceback with -v
        if is_out_of_memory(exc):  # MemoryError, torch.OutOfMemoryError, "can't allocate memory": one message
            return _fail(out_of_memory(exc).for_cli(), 2)
        hint = "" if STATE["verbose"] else " (rerun with -v for the traceback)"
        return _fail(f"internal error: {type(exc).__name__}: {exc}{hint}", 1)
    finally:
        use_cli_hints(False)
        # --max-pixels holds for one command (matters when main() is called in-process); images.py imports
        # torch: only loaded by a command that reads images, so only then is there a limit to reset
        if "diffsim.images" in sys.modules:
            sys.modules["diffsim.images"].set_max_pixels(None)
    return 0


def _os_message(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


def run() -> None:
    sys.exit(main())
