"""Split one gallery build into K independent parts without Ray (torchrun, SLURM, or by hand).

Part ``I`` of ``K`` holds the images whose id hashes to ``I`` (BLAKE2b of the id, modulo ``K``): the
split does not depend on the order or number of the other images, so appending images to a gallery
never moves an image to another part. Each part is an ordinary store; ``diffsim index merge`` joins them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from ..gallery.sources import Sources

#: (count variable, index variable) pairs read from the environment, first match wins
ENV_PAIRS = (("WORLD_SIZE", "RANK"), ("SLURM_NTASKS", "SLURM_PROCID"))


@dataclass(frozen=True)
class Partition:
    """Part ``index`` (0-based) of ``count``."""

    count: int
    index: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard index must be in 0..{self.count - 1} for {self.count} shard(s); got {self.index}")

    def holds(self, image_id: str) -> bool:
        return part_of(image_id, self.count) == self.index

    @property
    def label(self) -> str:
        return f"part{self.index:05d}-of-{self.count:05d}"


def part_of(image_id: str, count: int) -> int:
    """The part (0..count-1) an image id belongs to: stable across machines, runs and gallery changes."""
    digest = hashlib.blake2b(image_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % count


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer; got {value!r}") from None


def resolve_partition(
    num_shards: int | None = None, shard_index: int | None = None, environ: Mapping[str, str] | None = None
) -> Partition | None:
    """The partition to build: ``--num-shards/--shard-index`` if given, else ``WORLD_SIZE/RANK`` (torchrun)
    or ``SLURM_NTASKS/SLURM_PROCID`` (srun) when they name more than one task; None for a whole build."""
    if (num_shards is None) != (shard_index is None):
        raise ConfigError(
            "give both --num-shards and --shard-index (or neither, to read RANK/WORLD_SIZE or "
            "SLURM_PROCID/SLURM_NTASKS)"
        )
    if num_shards is not None and shard_index is not None:
        if num_shards < 1:
            raise ConfigError(f"--num-shards must be at least 1; got {num_shards}")
        return Partition(num_shards, shard_index) if num_shards > 1 else None
    env = os.environ if environ is None else environ
    for count_var, index_var in ENV_PAIRS:
        if count_var in env and index_var in env:
            count, index = _int(count_var, env[count_var]), _int(index_var, env[index_var])
            if count > 1:
                if not 0 <= index < count:
                    raise ConfigError(f"{index_var}={index} is outside 0..{count - 1} ({count_var}={count})")
                return Partition(count, index)
            return None
    return None


def bind_local_gpu(environ: Mapping[str, str] | None = None) -> int | None:
    """Under torchrun (``LOCAL_RANK``) with several GPUs visible, make GPU ``LOCAL_RANK`` this process's
    ``cuda`` device, so that ranks on one machine do not all use GPU 0; returns it (None: nothing done)."""
    env = os.environ if environ is None else environ
    if "LOCAL_RANK" not in env:
        return None
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return None
    index = _int("LOCAL_RANK", env["LOCAL_RANK"]) % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return index


def select_part(sources: Sources, part: Partition | None) -> Sources:
    """The images of ``sources`` in ``part`` (all of them for None), in their order, same root."""
    if part is None:
        return sources
    return Sources(tuple(s for s in sources if part.holds(s.id)), sources.root)


def part_path(out: str, part: Partition | None) -> str:
    """Where part ``part`` of a build to ``out`` goes: ``out`` with ``{index}``/``{count}`` filled in, or
    ``OUT.partIIIII-of-KKKKK`` beside it (whole builds: ``out`` itself)."""
    if part is None:
        return out
    if "{index" in out or "{count" in out:
        return out.format(index=part.index, count=part.count)
    return f"{out.rstrip('/').rstrip(os.sep)}.{part.label}"
