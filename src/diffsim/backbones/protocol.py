"""The contract every attention backbone (SD 1.x/2.x, SDXL, DiT, SD + IP-Adapter) fulfils.

A backbone turns a batch of preprocessed pixels into Q/K/V at named attention layers, for one
timestep, one :class:`Condition` and one noise seed. Metrics talk to backbones through this protocol
only (``tests/test_backbone_contract.py`` checks every backbone against it):

* ``identity``: the identity of the loaded weights (Hub commit, or resolved path + digest of every
  weight file, adapter and image-encoder weights included): the shared-model key and part of every
  feature-cache key;
* ``device`` / ``dtype`` / ``latent_factor`` / ``size_multiple`` (image sizes are multiples of it) /
  ``default_size``;
* ``layers(size)`` / ``aliases()`` / ``resolve(names, kind)``: what can be read and under which names;
* ``timestep(timestep, step)`` / ``step_table()``: the paper's step index K -> the actual T;
* ``extract(pixels, layers, timestep, condition, seed, branches)``: ``{path: QKV}``, each tensor
  ``(N, branches, heads, tokens, dim)``; ``branches`` 2 is the guidance pair, 1 the conditional
  branch alone;
* ``passes``: the number of denoiser forward passes so far (benchmarks and tests count them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from ..aas import QKV
from ..errors import ConfigError


@dataclass(frozen=True)
class TextCondition:
    """A text prompt (SD, SDXL, SD + IP-Adapter), with the per-model extras of text conditioning.

    ``size``: SDXL's micro-conditioning size (original and target size); None: the input size.
    ``ip_scale``: the IP-Adapter's weight in every ``attn2`` (paper 0.5); ignored without an adapter.
    """

    prompt: str = ""
    size: int | None = None
    ip_scale: float = 0.5


@dataclass(frozen=True)
class ClassCondition:
    """A class label (DiT): an ImageNet id or a label name of the pipeline's ``id2label``."""

    label: int | str


Condition = TextCondition | ClassCondition


def as_condition(condition: Any) -> Condition:
    """A :data:`Condition` from a condition object, a prompt string or a class id."""
    if isinstance(condition, (TextCondition, ClassCondition)):
        return condition
    if isinstance(condition, str):
        return TextCondition(condition)
    if isinstance(condition, int) and not isinstance(condition, bool):
        return ClassCondition(condition)
    raise ConfigError(f"a condition is a prompt, a class id or a TextCondition/ClassCondition; got {condition!r}")


def check_branches(branches: int) -> int:
    """``branches`` must be 1 (conditional branch) or 2 (guidance pair)."""
    if branches not in (1, 2) or isinstance(branches, bool):
        raise ConfigError(f"branches must be 1 (conditional only) or 2 (guidance pair); got {branches!r}")
    return int(branches)


@runtime_checkable
class AttentionBackbone(Protocol):
    """What a metric may use of a diffusion backbone (see the module docstring)."""

    kind: str
    identity: str
    device: torch.device
    dtype: torch.dtype
    passes: int

    @property
    def latent_factor(self) -> int: ...

    @property
    def size_multiple(self) -> int: ...

    @property
    def default_size(self) -> int: ...

    def layers(self, size: int) -> list[Any]: ...

    def aliases(self) -> dict[str, str]: ...

    def resolve(self, names: list[str], kind: str = "self") -> list[str]: ...

    def timestep(self, timestep: int | None = None, step: int | None = None) -> int: ...

    def step_table(self) -> list[int]: ...

    def extract(
        self,
        pixels: torch.Tensor,
        layers: list[str],
        timestep: int,
        condition: Any,
        seed: int,
        branches: int = 2,
    ) -> dict[str, QKV]: ...
