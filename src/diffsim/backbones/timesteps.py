"""Timestep conventions.

``timestep`` is the actual DDPM timestep T (0 <= T < num_train_timesteps). ``step`` is the paper's
convention, an index K into the model scheduler's ``timesteps`` after ``set_timesteps(1000)``: for
SD 1.5's PNDM scheduler that list is [1000, 999, 999, 998, ..., 1], so T = 1001 - K for K >= 2 and the
paper's "step 900" is T = 101; ``step 0`` (T = 1000) is out of range.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import TimestepError


def num_train_timesteps(scheduler: Any) -> int:
    return int(scheduler.config.num_train_timesteps)


def step_table(scheduler: Any) -> list[int]:
    """The scheduler's timesteps after ``set_timesteps(num_train_timesteps)`` (the paper's step axis)."""
    s = copy.deepcopy(scheduler)
    s.set_timesteps(num_train_timesteps(scheduler))
    return [int(round(float(t))) for t in s.timesteps]


def check_timestep(scheduler: Any, timestep: int, origin: str = "") -> int:
    """Validate an actual DDPM timestep."""
    n = num_train_timesteps(scheduler)
    if isinstance(timestep, bool) or not isinstance(timestep, int):
        raise TimestepError(f"timestep must be an integer; got {timestep!r}")
    if not 0 <= timestep < n:
        raise TimestepError(
            f"timestep T={timestep}{origin} is out of range: T must index the scheduler's {n} "
            f"training steps, 0 <= T <= {n - 1}"
        )
    return timestep


def step_to_timestep(scheduler: Any, step: int) -> int:
    """Map the paper's step index K to the actual timestep T = scheduler.timesteps[K]."""
    table = step_table(scheduler)
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < len(table):
        raise TimestepError(
            f"step must be an integer in 0..{len(table) - 1} ({type(scheduler).__name__} "
            f"has {len(table)} timesteps after set_timesteps); got {step!r}"
        )
    return check_timestep(scheduler, table[step], f" (from --step {step} on {type(scheduler).__name__})")


def resolve_timestep(scheduler: Any, timestep: int | None = None, step: int | None = None) -> int:
    """The actual timestep T from either ``timestep`` (validated) or the paper's ``step`` index K."""
    if timestep is not None and step is not None:
        from ..errors import ConfigError

        raise ConfigError("give either timestep (the actual T) or step (the paper's index), not both")
    if step is not None:
        return step_to_timestep(scheduler, step)
    if timestep is None:
        raise ValueError("timestep or step is required")
    return check_timestep(scheduler, timestep)
