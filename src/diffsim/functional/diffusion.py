"""Differentiable Q/K/V from the latent-diffusion backbones (SD 1.x/2.x, SDXL, DiT, SD + IP-Adapter).

The same computation as the backbones' cached ``extract`` (VAE posterior sample with the seeded
``eps_vae``, forward noising to T with the model's own scheduler, the guidance pair, Q/K/V at the
requested attention layers, stopping after the last one), written over the backbones' public parts so
that gradients reach the pixels: no ``no_grad``, no content hash, no latent cache. The parameters stay
frozen (``requires_grad=False``); only the inputs carry gradients.

Precision: the networks run in the backbone's dtype; noising and everything after the VAE run in
``promote(float32, input dtype)`` (float32 as the cached path, float64 for ``gradcheck``).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch

from ..aas import QKV
from ..backbones.capture import capture
from ..backbones.unet_forward import TruncatedUNet, UnsupportedLayout, plan_truncation
from ..errors import ConfigError

Noise = tuple[torch.Tensor, torch.Tensor]


KINDS = ("sd", "sdxl", "dit", "sd+ip-adapter")


def materialise(backbone: Any) -> Any:
    """The loaded backbone (a lazy SD stand-in loads its weights now: a forward pass is needed)."""
    from ..backbones.lazy import LazyStableDiffusion

    return backbone.real() if isinstance(backbone, LazyStableDiffusion) else backbone


def backbone_kind(backbone: Any) -> str:
    """``"sd"``, ``"sdxl"``, ``"dit"`` or ``"sd+ip-adapter"``."""
    kind = getattr(backbone, "kind", None)
    if kind not in KINDS:
        raise ConfigError(f"no differentiable diffusion path for a {type(backbone).__name__} backbone (kind {kind!r})")
    return str(kind)


def work_dtype(x: torch.Tensor) -> torch.dtype:
    """Noising and reductions: float32, or float64 for float64 inputs."""
    return torch.promote_types(torch.float32, x.dtype)


def seeded_noise(backbone: Any, seed: int, side: int) -> Noise:
    """(eps_vae, eps), each (1, C, side, side) float32: the backbone's own seeded draw (as the cached path)."""
    return backbone.noise(seed, side)


def fresh_noise(backbone: Any, side: int, generator: torch.Generator) -> Noise:
    """A new (eps_vae, eps) draw from ``generator`` (score-distillation style losses)."""
    c = int(backbone.vae.config.latent_channels)
    eps_vae = torch.randn((1, c, side, side), generator=generator, dtype=torch.float32)
    eps = torch.randn((1, c, side, side), generator=generator, dtype=torch.float32)
    return eps_vae, eps


@contextlib.contextmanager
def gradient_checkpointing(*modules: Any, enabled: bool = True) -> Iterator[None]:
    """diffusers' gradient checkpointing on ``modules`` for the duration (restored afterwards).

    Blocks that run whole (every block before the one holding the last requested layer) recompute
    their activations in the backward pass instead of keeping them.
    """
    if not enabled:
        yield
        return
    switched = []
    for m in modules:
        if getattr(m, "_supports_gradient_checkpointing", False) and not getattr(m, "is_gradient_checkpointing", False):
            m.enable_gradient_checkpointing()
            switched.append(m)
    try:
        yield
    finally:
        for m in switched:
            m.disable_gradient_checkpointing()


def encode_latents(backbone: Any, signed: torch.Tensor, eps_vae: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) in [-1, 1] -> clean latents z0 (N, C, S/f, S/f), differentiable."""
    vae = backbone.vae
    wd = work_dtype(signed)
    x = signed.to(backbone.device, vae.dtype).contiguous(memory_format=torch.channels_last)
    post = vae.encode(x).latent_dist
    z = post.mean.to(wd) + post.std.to(wd) * eps_vae.to(backbone.device, wd)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    # contiguous, as the cached path's latents (stacked from the latent cache): convolutions round
    # differently on channels_last inputs
    return ((z - shift) * float(vae.config.scaling_factor)).contiguous()


def noisy_latents(backbone: Any, kind: str, z0: torch.Tensor, timestep: int, eps: torch.Tensor) -> torch.Tensor:
    """x_T: ``add_noise`` (SD, as its cached path), then ``scale_model_input`` too for SDXL and DiT."""
    t = torch.full((z0.shape[0],), timestep, dtype=torch.long, device=z0.device)
    e = eps.to(z0.device, z0.dtype).expand_as(z0)
    if kind in ("sd", "sd+ip-adapter"):
        return backbone.scheduler.add_noise(z0, e, t)
    sched = copy.deepcopy(backbone.scheduler)  # add_noise / scale_model_input may keep a step index
    return sched.scale_model_input(sched.add_noise(z0, e, t), t[:1])


def _by_image(store: dict[str, QKV], layers: list[str], branches: int, n: int) -> dict[str, QKV]:
    """(branches*N, H, T, D) in branch-major order -> (N, branches, H, T, D)."""

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(branches, n, *x.shape[1:]).transpose(0, 1).contiguous()

    return {p: QKV(split(store[p].q), split(store[p].k), split(store[p].v)) for p in layers}


def _run_unet(
    backbone: Any,
    layers: list[str],
    sample: torch.Tensor,
    t: torch.Tensor,
    emb: torch.Tensor,
    added: dict[str, Any] | None,
    checkpoint: bool,
) -> dict[str, QKV]:
    """The explicit truncated U-Net (gradient checkpointing possible), else the hook path."""
    unet = backbone.unet
    try:
        plan_truncation(unet, layers)
    except UnsupportedLayout as exc:
        if checkpoint:
            raise ConfigError(f"gradient checkpointing needs the explicit truncated U-Net: {exc}") from exc
        return capture(
            unet, layers, sample, t, encoder_hidden_states=emb, added_cond_kwargs=added or {}, return_dict=False
        )
    runner = TruncatedUNet(unet, layers)
    with gradient_checkpointing(unet, backbone.vae, enabled=checkpoint):
        raw = runner(sample, t, emb, added)
    return {p: QKV(*raw[p]) for p in layers}


def diffusion_qkv(
    backbone: Any,
    pixels: torch.Tensor,
    layers: list[str],
    timestep: int,
    condition: str | int,
    noise: Noise,
    single_branch: bool = False,
    checkpoint: bool = False,
    conditioning_size: int | None = None,
    ip_scale: float = 0.5,
) -> dict[str, QKV]:
    """Q/K/V at module paths ``layers`` for pixels (N, 3, S, S) in [0, 1]: each ``(N, branches, H, T, D)``.

    ``condition``: the prompt (SD, SDXL, IP-Adapter) or the class id (DiT). ``noise``: (eps_vae, eps)
    from :func:`seeded_noise` (the cached path's draw) or :func:`fresh_noise`.
    """
    backbone = materialise(backbone)
    kind = backbone_kind(backbone)
    eps_vae, eps = noise
    n = pixels.shape[0]
    z0 = encode_latents(backbone, pixels * 2.0 - 1.0, eps_vae)
    xt = noisy_latents(backbone, kind, z0, timestep, eps).to(backbone.dtype)
    branches = 1 if single_branch else 2
    sample = xt if single_branch else torch.cat([xt, xt])
    t = torch.full((sample.shape[0],), timestep, dtype=torch.long, device=backbone.device)
    if kind == "dit":
        return _dit(backbone, layers, sample, t, int(condition), n, branches, checkpoint)
    if kind == "sd+ip-adapter":
        return _ip(backbone, pixels, layers, sample, t, str(condition), n, branches, checkpoint, ip_scale)
    added: dict[str, Any] | None = None
    if kind == "sdxl":
        cond, uncond, pooled, uncond_pooled = backbone.text_conditioning(str(condition))
        side = z0.shape[-1] * backbone.latent_factor
        ids = backbone.time_ids(z0.shape[-2] * backbone.latent_factor, side, conditioning_size)
        text = pooled.expand(n, -1) if single_branch else torch.cat([uncond_pooled.expand(n, -1), pooled.expand(n, -1)])
        added = {"text_embeds": text, "time_ids": ids.expand(sample.shape[0], -1)}
    else:
        cond = backbone.prompt_embedding(str(condition))
        uncond = None if single_branch else backbone.prompt_embedding("")
    emb = cond.expand(n, -1, -1) if single_branch else torch.cat([uncond.expand(n, -1, -1), cond.expand(n, -1, -1)])
    if getattr(backbone, "channels_last", False):
        sample = sample.contiguous(memory_format=torch.channels_last)
    store = _run_unet(backbone, layers, sample, t, emb, added, checkpoint)
    return _by_image(store, layers, branches, n)


def _dit(
    backbone: Any, layers: list[str], sample: torch.Tensor, t: torch.Tensor, c: int, n: int, branches: int, ckpt: bool
) -> dict[str, QKV]:
    if ckpt:
        raise ConfigError("gradient checkpointing is offered for U-Net backbones (SD, SDXL), not for DiT")
    cond = torch.full((n,), c, dtype=torch.long, device=backbone.device)
    null = torch.full((n,), backbone.num_classes, dtype=torch.long, device=backbone.device)
    labels = cond if branches == 1 else torch.cat([cond, null])
    store = capture(
        backbone.transformer, layers, sample, what="DiT", timestep=t, class_labels=labels, return_dict=False
    )
    return _by_image(store, layers, branches, n)


def clip_processor_pixels(backbone: Any, pixels: torch.Tensor) -> torch.Tensor:
    """The IP-Adapter image encoder's input from (N, 3, S, S) in [0, 1], on the device and differentiable:
    shortest side to the processor's size (antialiased bicubic; the cached path: Pillow on uint8), centre
    crop, the processor's mean / std."""
    from .resize import resize_crop

    proc = backbone.pipe.feature_extractor
    size = proc.size.get("shortest_edge") if hasattr(proc.size, "get") else proc.size["shortest_edge"]
    crop = proc.crop_size["height"]
    x = resize_crop(pixels, int(size), int(crop))
    mean = torch.tensor(proc.image_mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(proc.image_std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def _ip(
    backbone: Any,
    pixels: torch.Tensor,
    layers: list[str],
    sample: torch.Tensor,
    t: torch.Tensor,
    prompt: str,
    n: int,
    branches: int,
    ckpt: bool,
    scale: float,
) -> dict[str, QKV]:
    from ..backbones.ip_adapter import ip_cross_qkv

    if ckpt:
        raise ConfigError("gradient checkpointing is not offered for DiffSim-C (its U-Net pass uses hooks)")
    backbone.set_scale(scale)
    enc = backbone.pipe.image_encoder
    px = clip_processor_pixels(backbone, pixels.to(backbone.device)).to(enc.dtype)
    feats = enc(px, output_hidden_states=True).hidden_states[-2]
    cond = backbone.prompt_embedding(prompt)
    if branches == 1:
        emb, img = cond.expand(n, -1, -1), feats
    else:
        with torch.no_grad():  # diffusers' unconditional image: an all-zero (normalised) tensor
            zero = enc(torch.zeros_like(px[:1]), output_hidden_states=True).hidden_states[-2]
        emb = torch.cat([backbone.prompt_embedding("").expand(n, -1, -1), cond.expand(n, -1, -1)])
        img = torch.cat([zero.expand(n, -1, -1), feats])
    store = capture(
        backbone.unet,
        layers,
        sample,
        t,
        project=ip_cross_qkv,
        encoder_hidden_states=emb,
        added_cond_kwargs={"image_embeds": [img[:, None]]},
        return_dict=False,
    )
    return _by_image(store, layers, branches, n)
