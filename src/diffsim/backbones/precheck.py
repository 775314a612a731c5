"""Check a Stable Diffusion setting against a local model's *configs* before its weights load.

For a local diffusers folder the U-Net and scheduler configs are read (no weights: the U-Net is built
on the meta device) so that an unknown layer or an out-of-range step / timestep fails in a second,
before gigabytes of weights load. Hub ids and single files are checked after loading, as before (their
configs may not be on disk yet, and reading them must not start a download).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from .layers import resolve_layer
from .loading import _load_scheduler, classify, load_unet_skeleton, quiet_loading
from .timesteps import check_timestep, step_to_timestep

logger = logging.getLogger(__name__)


def precheck_local(model: str | os.PathLike, layers: Sequence[str], timestep: int | None,
                   step: int | None) -> None:
    """Raise :class:`LayerError` / :class:`TimestepError` (or :class:`ModelNotFoundError`) for a local
    diffusers folder whose configs refuse these settings; do nothing for Hub ids and single files."""
    if classify(model) != "folder":
        return
    path = os.path.expanduser(str(model))
    unet, _ = load_unet_skeleton(path)
    for name in layers:
        resolve_layer(unet, name, "self")
    if timestep is None and step is None:
        return
    try:
        with quiet_loading():
            scheduler = _load_scheduler(path, local_files_only=True)
    except Exception as exc:  # the full load reports a broken scheduler with its own message
        logger.debug("precheck: scheduler config of %s not readable (%s)", path, exc)
        return
    if step is not None:
        step_to_timestep(scheduler, step)
    else:
        check_timestep(scheduler, timestep)  # type: ignore[arg-type]
