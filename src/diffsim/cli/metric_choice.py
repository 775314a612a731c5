"""`--metric NAME` plus the DiffSim options the user typed, for commands that work with any metric."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

DEFAULT_METRIC = "diffsim-s"


def metric_option(f: Callable) -> Callable:
    return click.option("--metric", "metric_name", default=DEFAULT_METRIC, show_default=True,
                        help="Registered metric (`diffsim list`); options typed here override its preset.")(f)


def build_named_metric(ctx: click.Context, name: str, opts: dict[str, Any]) -> Any:
    """``create_metric(name, **overrides)`` with only the options given on the command line as overrides."""
    from ..registry import create_metric
    from .bench_options import typed_overrides

    over = typed_overrides(ctx, opts)
    if not name.startswith("diffsim"):
        over.pop("seed", None)  # only DiffSim takes a noise seed
    return create_metric(name, **over)
