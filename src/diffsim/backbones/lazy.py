"""A Stable Diffusion backbone of a local folder that loads its weights only when a network must run.

Until then it answers from the folder's configs (no weights): the U-Net built on the meta device for
layer names, the scheduler for steps and timesteps, the VAE factor for the size, and the weights'
identity (:mod:`.identity`) for feature-cache keys. So a metric whose every requested feature is in
the disk cache never loads the model, and a bad layer or step fails before the weights load. Any other
attribute (``extract``, ``encode``, ``unet``, ``passes``...) loads the real, shared
:class:`StableDiffusionBackbone` and forwards to it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..aas import QKV
from ..errors import ModelNotFoundError
from ..models import loaded_models, shared_model
from .layers import alias_table, list_attention_layers, resolve_layers
from .loading import _check_folder, _first_line, _load_scheduler, classify, load_unet_skeleton, quiet_loading
from .spec import LoadSpec
from .stable_diffusion import StableDiffusionBackbone
from .timesteps import resolve_timestep, step_table

logger = logging.getLogger(__name__)


class LazyStableDiffusion:
    """Stands in for :class:`StableDiffusionBackbone` until a forward pass is needed."""

    kind = "sd"

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self._real: StableDiffusionBackbone | None = None
        path = str(Path(str(spec.model)).expanduser())
        self.source = path
        self.device, self.dtype = spec.torch_device, spec.torch_dtype
        self.identity = spec.identity()
        _check_folder(Path(path))  # the same message as a full load for a folder that is not a pipeline
        self._skeleton, self._factor = load_unet_skeleton(path, spec.revision)
        try:
            with quiet_loading():
                self._scheduler = _load_scheduler(path, local_files_only=True)
        except ModelNotFoundError:
            raise
        except Exception as exc:
            raise ModelNotFoundError(f"could not load the diffusers folder {path}: {_first_line(exc)}") from exc

    @classmethod
    def load(cls, spec: LoadSpec) -> Any:
        """The backbone ``spec`` names: lazy for a local folder (see :meth:`create`)."""
        return cls.create(spec)

    @classmethod
    def create(cls, spec: LoadSpec) -> Any:
        """A lazy backbone for a local diffusers folder (the loaded one if it is in memory already); Hub
        ids and single files load at once. The speed options go to the real backbone (see
        :meth:`StableDiffusionBackbone.load`)."""
        if classify(spec.model) != "folder" or spec.single_file_config:
            return StableDiffusionBackbone.load(spec)
        key = ("stable-diffusion-lazy", *StableDiffusionBackbone.shared_key(spec)[1:])
        if key not in loaded_models():
            loaded = StableDiffusionBackbone.find_loaded(spec)
            if loaded is not None:  # loaded eagerly before: use it
                return loaded
        return shared_model(key, lambda: cls(spec))  # one stand-in per model

    # ------------------------------------------------------------- from configs
    @property
    def weights_loaded(self) -> bool:
        """Whether the weights have been loaded."""
        return self._real is not None

    @property
    def latent_factor(self) -> int:
        return self._factor

    @property
    def size_multiple(self) -> int:
        return self._factor

    @property
    def default_size(self) -> int:
        return StableDiffusionBackbone.default_size

    @property
    def passes(self) -> int:
        """Denoiser passes so far (0 while the weights are not loaded)."""
        return 0 if self._real is None else self._real.passes

    def extract(
        self,
        pixels: torch.Tensor,
        layers: list[str],
        timestep: int,
        condition: Any,
        seed: int,
        branches: int = 2,
        **options: Any,
    ) -> dict[str, QKV]:
        """:meth:`StableDiffusionBackbone.extract` of the real backbone (loading its weights now)."""
        return self.real().extract(pixels, layers, timestep, condition, seed, branches, **options)

    @property
    def scheduler(self) -> Any:
        return self._scheduler if self._real is None else self._real.scheduler

    def resolve(self, names: list[str], kind: str = "self") -> list[str]:
        return resolve_layers(self._unet(), names, kind)

    def _unet(self) -> Any:
        return self._skeleton if self._real is None else self._real.unet

    def layers(self, size: int) -> list:
        """Every attention layer at image size ``size`` (from the config while the weights are not loaded)."""
        return list_attention_layers(self._unet(), size // self._factor)

    def aliases(self) -> dict[str, str]:
        return alias_table(self._unet())

    def timestep(self, timestep: int | None = None, step: int | None = None) -> int:
        """The actual timestep T from either ``timestep`` or the paper's ``step`` index."""
        return resolve_timestep(self.scheduler, timestep, step)

    def step_table(self) -> list[int]:
        return step_table(self.scheduler)

    # ------------------------------------------------------------------ weights
    def real(self) -> StableDiffusionBackbone:
        """The loaded backbone (loading it on first use; shared with every metric on this model)."""
        if self._real is None:
            logger.debug("%s: loading the weights now (a feature is not in the cache)", self.source)
            self._real = StableDiffusionBackbone.load(self.spec)
            self._skeleton = None
        return self._real

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_real", "spec", "_skeleton", "_factor", "_scheduler"):
            raise AttributeError(name)
        return getattr(self.real(), name)

    def __repr__(self) -> str:
        state = "loaded" if self._real is not None else "not loaded yet"
        return f"LazyStableDiffusion({self.source!r}, {state})"
