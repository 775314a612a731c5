"""Click types for numeric options: bounds are checked while parsing, before any model loads.

A value out of bounds raises :class:`~diffsim.errors.ConfigError` naming the flag, so the user sees one
line ``error: --batch-size must be a positive integer; got 0`` and exit code 2 (text that is not a
number at all stays click's usage error). The types are click's ``IntRange`` / ``FloatRange`` with that
error and a finiteness check added; the library's own checks live in :mod:`diffsim.bounds`.
"""

from __future__ import annotations

import math
from typing import Any

import click

from ..bounds import MAX_SIZE, SEED_LIMIT
from ..errors import ConfigError


def _flag(param: click.Parameter | None) -> str:
    if param is None:
        return "value"
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return opts[0] if opts else (param.name or "value")


class _Checked:
    """click's own range check (``IntRange`` / ``FloatRange``), failing as one ``ConfigError`` line; NaN and
    infinity fail too (every comparison with NaN is false, so ``FloatRange`` alone lets them through)."""

    number: click.ParamType
    what: str

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        out = self.number.convert(value, param, ctx)  # text that is no number: click's usage error
        try:
            if not math.isfinite(out):
                raise click.BadParameter(str(out))
            return super().convert(out, param, ctx)  # type: ignore[misc]
        except click.BadParameter:
            raise ConfigError(f"{_flag(param)} must be {self.what}; got {value}") from None


class IntBounds(_Checked, click.IntRange):
    """An integer within [low, high] (either bound optional)."""

    name = "integer"
    number = click.INT

    def __init__(self, low: int | None, high: int | None = None, *, what: str) -> None:
        super().__init__(low, high)
        self.what = what


class FloatBounds(_Checked, click.FloatRange):
    """A finite float within [low, high] (either bound optional; ``low_open``: > low)."""

    name = "float"
    number = click.FLOAT

    def __init__(
        self, low: float | None = None, high: float | None = None, *, what: str, low_open: bool = False
    ) -> None:
        super().__init__(low, high, min_open=low_open)
        self.what = what


#: counts that must be at least one (batch size, top-k, shards, frames...)
COUNT = IntBounds(1, what="a positive integer")
#: counts where 0 means "none" (DataLoader workers: 0 = the main process; timesteps, step indices)
NON_NEGATIVE = IntBounds(0, what="a non-negative integer")
#: noise seeds: what torch, numpy and random all take
SEED = IntBounds(0, SEED_LIMIT - 1, what="an integer with 0 <= seed < 2**63 (e.g. 2334)")
#: an image size before the model's own minimum is known
SIZE = IntBounds(1, MAX_SIZE, what=f"an image size in 1..{MAX_SIZE} pixels (a larger one cannot fit in memory)")
#: a finite float (thresholds, colour limits)
FINITE = FloatBounds(what="a finite number")
#: a finite float >= 0 (GPU fractions)
FINITE_NON_NEGATIVE = FloatBounds(0.0, what="a finite number >= 0")
#: a fraction in (0, 1] (a recall target)
FRACTION = FloatBounds(0.0, 1.0, what="a number in (0, 1]", low_open=True)
#: TCP ports
PORT = IntBounds(0, 65535, what="a port number in 0..65535")


class CountOrAuto(click.ParamType):
    """``auto`` or a positive integer (``retrieve --prefilter``)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            return COUNT.convert(value, param, ctx)
        except (click.BadParameter, ConfigError):
            raise ConfigError(f"{_flag(param)} must be a positive integer or auto; got {value}") from None


#: ``auto`` or a positive integer
COUNT_OR_AUTO = CountOrAuto()
