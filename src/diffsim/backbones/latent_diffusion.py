"""One base for every latent-diffusion backbone: encode -> noise -> model input -> conditioning -> capture.

:class:`LatentDiffusionBackbone.extract` is the one implementation of the
:class:`~diffsim.backbones.protocol.AttentionBackbone` contract's ``extract``; a backbone (SD 1.x/2.x,
SDXL, DiT, SD + IP-Adapter) supplies only what differs:

* ``model_input(z0, T, seed)``: the noised latent the denoiser sees (default: the scheduler's
  ``add_noise`` then ``scale_model_input``);
* ``conditioning(condition, n, branches, latents, pixels)``: the denoiser's keyword inputs for the batch,
  built with :func:`guidance_pair` (the guidance pair is assembled in this one place);
* ``runner``: None (the default: the hook capture of :mod:`.capture` on ``denoiser``) or the explicit
  truncated U-Net of :mod:`.unet_forward` (SD's ``compile`` option).

``extract(..., grad=True)`` is the same computation keeping the autograd graph to the pixels (the
differentiable path of :mod:`diffsim.functional` and :mod:`diffsim.loss`): no ``no_grad``, no content
hash, no latent cache (:meth:`~.latents.LatentEncoding.encode_differentiable`), optionally an explicit
``noise=(eps_vae, eps)`` instead of the seeded draw and ``checkpoint=True`` (gradient checkpointing, U-Net
backbones: through the explicit truncated U-Net). A backbone may override ``conditioning_differentiable``
(the IP-Adapter: image tokens with gradients). The parameters stay frozen; only the inputs carry gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..aas import QKV
from ..errors import ConfigError
from .capture import capture, capture_outputs, check_captured, self_attention_qkv
from .latents import LatentEncoding, Noise
from .protocol import Condition, as_condition, check_branches
from .unet_forward import ExplicitRunner, gradient_checkpointing, run_checkpointed


def guidance_pair(cond: torch.Tensor, other: torch.Tensor, n: int, branches: int, cond_first: bool = False):
    """The batch's conditioning rows, branch-major: ``[other x n, cond x n]`` (``cond_first``: ``[cond, other]``),
    or ``cond x n`` alone for one branch. ``cond`` / ``other`` have 1 or ``n`` rows."""
    c = cond.expand(n, *cond.shape[1:])
    if branches == 1:
        return c
    o = other.expand(n, *other.shape[1:])
    return torch.cat([c, o] if cond_first else [o, c])


def by_image(qkv: QKV, branches: int, m: int, n: int, copy: bool = False) -> QKV:
    """(branches*M, H, T, D) in [branch-major] order -> (N, branches, H, T, D): the first N of M images.

    ``copy`` forces fresh storage (CUDA graphs reuse their output buffers on the next call).
    """

    def split(x: torch.Tensor) -> torch.Tensor:
        y = x.reshape(branches, m, *x.shape[1:])[:, :n].transpose(0, 1)
        return y.clone(memory_format=torch.contiguous_format) if copy else y.contiguous()

    return QKV(split(qkv.q), split(qkv.k), split(qkv.v))


class LatentDiffusionBackbone(LatentEncoding):
    """Base of the SD, SDXL, DiT and SD + IP-Adapter backbones (see the module docstring)."""

    kind: ClassVar[str] = "latent-diffusion"
    #: which condition type ``extract`` takes (a prompt for text models, a class for DiT)
    condition_type: ClassVar[type] = object
    #: what the capture error calls the denoiser
    denoiser_name: ClassVar[str] = "U-Net"
    identity: str
    device: torch.device
    dtype: torch.dtype
    passes: int = 0
    #: the explicit truncated U-Net (:mod:`.unet_forward`) where the ``compile`` option sets one; None: hooks
    runner: ExplicitRunner | None = None

    @property
    def size_multiple(self) -> int:
        """Image sizes must be multiples of this (the VAE factor; DiT: times its patch size)."""
        return self.latent_factor

    @property
    def denoiser(self) -> nn.Module:
        """The network whose attention layers are read (U-Net or DiT transformer)."""
        raise NotImplementedError

    @property
    def denoiser_config(self) -> Any:
        """The denoiser's config (block types, channels): what can be read without running it."""
        return self.denoiser.config

    def no_grad(self) -> contextlib.AbstractContextManager:
        """The context of the denoiser pass (``torch.no_grad``; SD may use inference mode)."""
        return torch.no_grad()

    # ------------------------------------------------------------------ hooks
    def project(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> QKV:
        """A hooked attention module's call -> its Q/K/V (the IP-Adapter: Q against the image tokens)."""
        return self_attention_qkv(module, args, kwargs)

    def check_condition(self, condition: Condition) -> Condition:
        if not isinstance(condition, self.condition_type):
            raise ConfigError(
                f"the {self.kind} backbone is conditioned by a {self.condition_type.__name__}; got {condition!r}"
            )
        return condition

    def conditioning(
        self, condition: Any, n: int, branches: int, latents: torch.Tensor, pixels: torch.Tensor | None
    ) -> dict[str, Any]:
        """The denoiser's keyword inputs (text states, class labels, ...) for ``n`` images and ``branches``."""
        raise NotImplementedError

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().moments(x) if self.runner is None else self.runner.moments(x)

    def run(
        self, sample: torch.Tensor, t: torch.Tensor, layers: list[str], inputs: dict[str, Any], stop_early: bool
    ) -> dict[str, QKV]:
        """One denoiser pass with Q/K/V captured at ``layers`` (stopping after the last one): the runner where
        it serves, else the hook path."""
        served = None if self.runner is None else self.runner.run(sample, t, layers, inputs, stop_early)
        return served if served is not None else self.hooked(sample, t, layers, inputs, stop_early)

    def hooked(
        self, sample: torch.Tensor, t: torch.Tensor, layers: list[str], inputs: dict[str, Any], stop_early: bool
    ) -> dict[str, QKV]:
        """The hook path: the denoiser's own forward with capture pre-hooks (:mod:`.capture`)."""
        return capture(
            self.denoiser,
            layers,
            sample,
            timestep=t,
            stop_early=stop_early,
            project=self.project,
            what=self.denoiser_name,
            return_dict=False,
            **inputs,
        )

    # ------------------------------------------------------ differentiable path
    def conditioning_differentiable(
        self, condition: Any, n: int, branches: int, latents: torch.Tensor, pixels: torch.Tensor | None
    ) -> dict[str, Any]:
        """:meth:`conditioning` on the differentiable path (default: the same inputs; they do not depend on
        the pixels)."""
        return self.conditioning(condition, n, branches, latents, pixels)

    def run_differentiable(
        self,
        sample: torch.Tensor,
        t: torch.Tensor,
        layers: list[str],
        inputs: dict[str, Any],
        stop_early: bool,
        checkpoint: bool,
    ) -> dict[str, QKV]:
        """:meth:`hooked` keeping the graph; ``checkpoint``: the explicit U-Net (:func:`.run_checkpointed`)."""
        if checkpoint:
            return run_checkpointed(self.denoiser, sample, t, layers, inputs, stop_early)
        return self.hooked(sample, t, layers, inputs, stop_early)

    @contextlib.contextmanager
    def _differentiable(self, noise: Noise | None, side: int) -> Iterator[None]:
        """The explicit ``(eps_vae, eps)`` (if any) replaces the seeded draw for the duration."""
        if noise is None:
            yield
            return
        c = int(self.vae.config.latent_channels)
        for e in noise:
            if tuple(e.shape) != (1, c, side, side):
                raise ConfigError(f"noise tensors must have shape (1, {c}, {side}, {side}); got {tuple(e.shape)}")
        self._noise_override = (noise[0], noise[1])
        try:
            yield
        finally:
            self._noise_override = None

    # --------------------------------------------------------------- features
    def extract(
        self,
        pixels: torch.Tensor,
        layers: list[str],
        timestep: int,
        condition: Any,
        seed: int,
        branches: int = 2,
        *,
        stop_early: bool = True,
        grad: bool = False,
        noise: Noise | None = None,
        checkpoint: bool = False,
    ) -> dict[str, QKV]:
        """Q/K/V at module paths ``layers`` for pixels (N, 3, H, W) in [-1, 1]: each ``(N, branches, heads, T, D)``
        in the model dtype. ``condition``: a :data:`~.protocol.Condition`, a prompt or a class id.

        ``grad=True``: the differentiable path (see the module docstring): ``noise`` (eps_vae, eps), each
        ``(1, C, side, side)``, replaces the seeded draw; ``checkpoint`` turns on gradient checkpointing.
        """
        if not grad:
            if noise is not None or checkpoint:
                raise ConfigError("noise= and checkpoint= apply to the differentiable path (grad=True)")
            z0 = self.encode(pixels, seed)
            return self.extract_latents(
                z0, layers, timestep, condition, seed, branches, stop_early=stop_early, pixels=pixels
            )
        side = pixels.shape[-1] // self.latent_factor
        with self._differentiable(noise, side), gradient_checkpointing(self.vae, enabled=checkpoint):
            z0 = self.encode_differentiable(pixels, seed)
            return self._extract(z0, layers, timestep, condition, seed, branches, stop_early, pixels, checkpoint)

    def extract_latents(
        self,
        z0: torch.Tensor,
        layers: list[str],
        timestep: int,
        condition: Any,
        seed: int,
        branches: int = 2,
        *,
        stop_early: bool = True,
        pixels: torch.Tensor | None = None,
    ) -> dict[str, QKV]:
        """As :meth:`extract`, from clean latents (a sweep encodes once for many timesteps). A backbone that
        conditions on the image itself (the IP-Adapter) needs the ``pixels`` too."""
        return self._extract(z0, layers, timestep, condition, seed, branches, stop_early, pixels, None)

    def _pass_inputs(
        self,
        z0: torch.Tensor,
        timestep: int,
        condition: Any,
        seed: int,
        branches: int,
        pixels: torch.Tensor | None,
        grad: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """(sample, t, conditioning inputs) of one denoiser pass from clean latents (counted in ``passes``)."""
        cond = self.check_condition(as_condition(condition))
        m = z0.shape[0]
        with contextlib.nullcontext() if grad else torch.no_grad():
            xt = self.model_input(z0, timestep, seed).to(self.dtype)
            if grad:
                inputs = self.conditioning_differentiable(cond, m, branches, z0, pixels)
            else:
                inputs = self.conditioning(cond, m, branches, z0, pixels)
        sample = xt if branches == 1 else torch.cat([xt, xt])
        t = torch.full((sample.shape[0],), timestep, dtype=torch.long, device=self.device)
        self.passes += 1
        return sample, t, inputs

    def extract_outputs(
        self,
        pixels: torch.Tensor,
        modules: list[str],
        timestep: int,
        condition: Any,
        seed: int,
        branches: int = 1,
        *,
        grad: bool = False,
        noise: Noise | None = None,
        checkpoint: bool = False,
    ) -> dict[str, torch.Tensor]:
        """The outputs (hidden states) of denoiser modules ``modules`` (e.g. ``up_blocks.1``, a whole U-Net
        block) for pixels (N, 3, H, W) in [-1, 1]: each ``(N, branches, ...)`` in the model dtype.

        The same encoding, seeded noise and conditioning as :meth:`extract`; the pass runs on forward hooks
        and stops after the last module. ``grad=True`` keeps the graph to the pixels (``noise``: an explicit
        ``(eps_vae, eps)``, as for :meth:`extract`; ``checkpoint``: gradient checkpointing in the denoiser and VAE).
        """
        branches = check_branches(branches)
        if not grad:
            if noise is not None or checkpoint:
                raise ConfigError("noise= and checkpoint= apply to the differentiable path (grad=True)")
            z0 = self.encode(pixels, seed)
        side = pixels.shape[-1] // self.latent_factor
        with (
            self._differentiable(noise if grad else None, side),
            gradient_checkpointing(self.denoiser, self.vae, enabled=checkpoint),
        ):
            if grad:
                z0 = self.encode_differentiable(pixels, seed)
            n = z0.shape[0]
            sample, t, inputs = self._pass_inputs(z0, timestep, condition, seed, branches, pixels, grad)
            # the backbone's own denoiser call (its argument convention), every layer list empty: the output
            # hooks stop the pass after the last module
            with capture_outputs(self.denoiser, list(modules), self.denoiser_name) as store:
                if grad:
                    self.run_differentiable(sample, t, [], inputs, False, False)
                else:
                    with self.no_grad():
                        self.run(sample, t, [], inputs, False)
            check_captured(store, list(modules), self.denoiser_name)
        return {p: store[p].reshape(branches, n, *store[p].shape[1:]).transpose(0, 1) for p in modules}

    def _extract(
        self,
        z0: torch.Tensor,
        layers: list[str],
        timestep: int,
        condition: Any,
        seed: int,
        branches: int,
        stop_early: bool,
        pixels: torch.Tensor | None,
        checkpoint: bool | None,
    ) -> dict[str, QKV]:
        """The pass from clean latents; ``checkpoint`` None: the cached path (no graph), else differentiable."""
        grad = checkpoint is not None
        n = z0.shape[0]
        layers = list(layers)
        z0 = z0 if grad or self.runner is None else self.runner.pad(z0, layers, stop_early)
        m = z0.shape[0]
        branches = check_branches(branches)
        sample, t, inputs = self._pass_inputs(z0, timestep, condition, seed, branches, pixels, grad)
        if grad:
            store = self.run_differentiable(sample, t, layers, inputs, stop_early, bool(checkpoint))
        else:
            with self.no_grad():
                store = self.run(sample, t, layers, inputs, stop_early)
        check_captured(store, layers, self.denoiser_name)
        copy = not grad and self.runner is not None and self.runner.copy_outputs
        return {p: by_image(store[p], branches, m, n, copy=copy) for p in layers}
