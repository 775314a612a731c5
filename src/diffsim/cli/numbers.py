"""Click types for numeric options: bounds are checked while parsing, before any model loads.

A value out of bounds raises :class:`~diffsim.errors.ConfigError` naming the flag, so the user sees one
line ``error: --batch-size must be a positive integer; got 0`` and exit code 2 (text that is not a
number at all stays click's usage error). Floats refuse NaN and infinity, which ``click.FloatRange``
lets through (every comparison with NaN is false).
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


class Bounded(click.ParamType):
    """An int or a finite float within [low, high] (either bound optional)."""

    def __init__(
        self, kind: type, low: float | None = None, high: float | None = None, what: str = "", low_open: bool = False
    ) -> None:
        self.kind = kind
        self.low = low
        self.low_open = low_open
        self.high = high
        self.what = what
        self.name = "integer" if kind is int else "float"

    def _expected(self) -> str:
        if self.what:
            return self.what
        noun = "integer" if self.kind is int else "finite number"
        if self.low is not None and self.high is not None:
            return f"{'an' if noun[0] in 'ai' else 'a'} {noun} in {self.low}..{self.high}"
        if self.low is not None:
            return f"{'an' if noun[0] in 'ai' else 'a'} {noun} >= {self.low}"
        return f"{'an' if noun[0] in 'ai' else 'a'} {noun}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        base = click.INT if self.kind is int else click.FLOAT
        out = base.convert(value, param, ctx)
        bad = (self.kind is float and not math.isfinite(out)) or (
            (self.low is not None and (out <= self.low if self.low_open else out < self.low))
            or (self.high is not None and out > self.high)
        )
        if bad:
            raise ConfigError(f"{_flag(param)} must be {self._expected()}; got {value}")
        return out


#: counts that must be at least one (batch size, top-k, shards, frames...)
COUNT = Bounded(int, 1, what="a positive integer")
#: counts where 0 means "none" (DataLoader workers: 0 = the main process; timesteps, step indices)
NON_NEGATIVE = Bounded(int, 0, what="a non-negative integer")
#: noise seeds: what torch, numpy and random all take
SEED = Bounded(int, 0, SEED_LIMIT - 1, what="an integer with 0 <= seed < 2**63 (e.g. 2334)")
#: an image size before the model's own minimum is known
SIZE = Bounded(int, 1, MAX_SIZE, what=f"an image size in 1..{MAX_SIZE} pixels (a larger one cannot fit in memory)")
#: a finite float (thresholds, colour limits)
FINITE = Bounded(float)
#: a finite float >= 0 (GPU fractions)
FINITE_NON_NEGATIVE = Bounded(float, 0.0, what="a finite number >= 0")
#: a fraction in (0, 1] (a recall target)
FRACTION = Bounded(float, 0.0, 1.0, what="a number in (0, 1]", low_open=True)
#: TCP ports
PORT = Bounded(int, 0, 65535, what="a port number in 0..65535")


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
