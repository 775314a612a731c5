"""One object for everything that selects a loaded backbone: :class:`LoadSpec`.

Its fields are named like the metric settings that fill them (a metric's ``settings.load_dict()``),
so the load part of a metric's settings travels to the backbone loader as this one object. Each
backbone reads the fields that apply to it; :meth:`LoadSpec.identity` is the weights' identity
(:mod:`.identity`), covering every weight file the backbone loads (a fixed VAE, the IP-Adapter and its
image encoder included), and :meth:`LoadSpec.key` the shared-model key (:mod:`diffsim.models`).
A backbone's own load options (SD3 without T5: ``text_encoder_3=False``) travel in ``options``, not as
fields: the backbone declares them (``load_options``) and checks them with :func:`check_options`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from ..devices import resolve_device, resolve_dtype
from ..errors import ConfigError
from .identity import model_identity


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    """Where a backbone's weights come from and how they run."""

    model: str | os.PathLike
    device: str | torch.device | None = None
    dtype: str | torch.dtype | None = None
    revision: str | None = None
    variant: str | None = None
    single_file_config: str | None = None
    # Stable Diffusion 1.x/2.x speed options
    compile: bool | str = False
    channels_last: bool = False
    inference_mode: bool = False
    # SDXL: a fixed VAE
    vae: str | os.PathLike | None = None
    # SD + IP-Adapter: where the adapter is (h94 layout)
    ip_adapter: str | os.PathLike | None = None
    ip_subfolder: str = "models"
    ip_weight_name: str = "ip-adapter-plus_sd15.safetensors"
    ip_image_encoder: str = "image_encoder"
    #: the backbone's own load options, ``(name, value)`` pairs sorted by name (see :func:`check_options`)
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, values: dict[str, Any], default_model: str, options: dict[str, Any] | None = None) -> LoadSpec:
        """A spec from a metric's load settings (``settings.load_dict()``); names in ``options`` (a backbone's
        ``load_options``: name -> default) go to :attr:`options` where they differ from their default (the
        defaults leave the identity as it was); other unrelated names are ignored."""
        names = {f.name for f in dataclasses.fields(cls)} - {"options"}
        kw = {k: v for k, v in values.items() if k in names}
        kw["model"] = kw.get("model") or default_model
        own = tuple(sorted((k, v) for k, v in values.items() if k in (options or {}) and v != (options or {})[k]))
        return cls(**kw, options=own)

    def replace(self, **changes: Any) -> LoadSpec:
        return dataclasses.replace(self, **changes)

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return resolve_dtype(self.dtype, self.torch_device)

    def identity(self, *extras: str) -> str:
        """The identity of the weights this spec loads: the model's, plus the variant, the single-file
        config, a fixed VAE and an IP-Adapter (with its image encoder) where given; ``extras`` name
        what else the backbone reads."""
        out = model_identity(self.model, self.revision)
        if self.variant:
            out += f"+variant={self.variant}"
        if self.single_file_config:
            out += f"+config={model_identity(self.single_file_config)}"
        if self.vae is not None:
            out += f"+vae={model_identity(self.vae)}"
        if self.ip_adapter is not None:
            out += f"+ip={self.ip_identity()}"
        out += "".join(f"+{k}={v}" for k, v in self.options)
        return out + "".join(f"+{e}" for e in extras)

    def ip_identity(self) -> str:
        """The IP-Adapter weights and image encoder: a local folder's files, or the Hub commit."""
        assert self.ip_adapter is not None
        root = Path(str(self.ip_adapter)).expanduser()
        if root.is_dir():
            weights = model_identity(root / self.ip_subfolder / self.ip_weight_name)
            encoder = model_identity(root / self.ip_subfolder / self.ip_image_encoder)
            return f"{weights}+encoder={encoder}"
        return f"{model_identity(self.ip_adapter)}/{self.ip_subfolder}/{self.ip_weight_name}+{self.ip_image_encoder}"

    def key(self, kind: str, *options: Any) -> tuple:
        """The shared-model key: kind, weights identity, device, dtype and the options that select
        another loaded instance."""
        return (kind, self.identity(), str(self.torch_device), str(self.torch_dtype), *options)


def check_options(options: tuple[tuple[str, Any], ...], declared: dict[str, Any], what: str) -> dict[str, Any]:
    """``declared``'s defaults overridden by ``options``; an unknown name or a value of another type than
    its default is a :class:`ConfigError` naming the known options."""
    out = dict(declared)
    for name, value in options:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ConfigError(f"{what} has no load option {name!r}; its load options: {known}")
        want = type(declared[name])
        if type(value) is not want:
            raise ConfigError(f"{what} load option {name} must be a {want.__name__}; got {value!r}")
        out[name] = value
    return out
