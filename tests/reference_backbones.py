"""Straightforward float64 references for the SDXL, DiT and DiffSim-C backbones (one pair at a time).

Written from the method description, independently of ``diffsim.backbones``: each image is encoded by
a float64 copy of the VAE, noised with ``sqrt(abar_T) z0 + sqrt(1 - abar_T) eps`` where ``abar`` is
recomputed from the scheduler's beta schedule, the conditioning is built by hand, the *full* denoiser
forward runs with a pre-hook that records the attention module's input, Q/K/V are projected and the
attention is an explicit softmax. Only the pretrained modules and the CLIP image processor are reused.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from PIL import Image


def abar(scheduler, t: int) -> float:
    """alphas_cumprod[t] in float64 from the scheduler's beta schedule."""
    c = scheduler.config
    n = c.num_train_timesteps
    if c.beta_schedule == "scaled_linear":
        betas = np.linspace(c.beta_start**0.5, c.beta_end**0.5, n, dtype=np.float64) ** 2
    elif c.beta_schedule == "linear":
        betas = np.linspace(c.beta_start, c.beta_end, n, dtype=np.float64)
    else:
        raise NotImplementedError(c.beta_schedule)
    return float(np.cumprod(1.0 - betas)[t])


def noisy_latent(vae, pixels: torch.Tensor, t: int, scheduler, seed: int) -> torch.Tensor:
    vae = copy.deepcopy(vae).double()
    dist = vae.encode(pixels.double()).latent_dist
    g = torch.Generator("cpu").manual_seed(seed)
    eps_vae = torch.randn(dist.mean.shape, generator=g).double()
    eps = torch.randn(dist.mean.shape, generator=g).double()
    z0 = vae.config.scaling_factor * (dist.mean + dist.std * eps_vae)
    a = abar(scheduler, t)
    return math.sqrt(a) * z0 + math.sqrt(1 - a) * eps


def heads(x: torch.Tensor, h: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.reshape(b, n, h, c // h).permute(0, 2, 1, 3)


def attention(q, k, v) -> torch.Tensor:
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ v


def cos(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.flatten(), y.flatten()
    return float(x @ y / (x.norm() * y.norm()))


def pair_score(qkv_a, qkv_b) -> float:
    """(AAS(A, B) + AAS(B, A)) / 2 from per-image (q, k, v) tuples."""
    (qa, ka, va), (qb, kb, vb) = qkv_a, qkv_b
    return 0.5 * (cos(attention(qa, kb, vb), attention(qa, ka, va)) + cos(attention(qb, ka, va), attention(qb, kb, vb)))


def _record(module):
    seen = {}

    def hook(mod, args, kwargs):
        seen["x"] = args[0] if args else kwargs["hidden_states"]
        seen["context"] = kwargs.get("encoder_hidden_states")

    return seen, module.register_forward_pre_hook(hook, with_kwargs=True)


def _self_qkv(module, x):
    return tuple(heads(p(x), module.heads) for p in (module.to_q, module.to_k, module.to_v))


# ------------------------------------------------------------------------------------------- SDXL
@torch.no_grad()
def sdxl_qkv(pipe, pixels, layer: str, t: int, prompt: str, seed: int, conditioning_size: int | None = None):
    """One image's Q/K/V (2, heads, T, D) at ``layer`` of a float64 copy of the SDXL U-Net."""
    unet = copy.deepcopy(pipe.unet).double()
    xt = noisy_latent(pipe.vae, pixels, t, pipe.scheduler, seed)
    states, pooled = [], None
    for tok, enc in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
        enc = copy.deepcopy(enc).double()
        ids = tok(
            [prompt], padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        out = enc(ids, output_hidden_states=True)
        states.append(out.hidden_states[-2])
        pooled = out[0] if out[0].dim() == 2 else pooled
    cond = torch.cat(states, dim=-1)
    if pipe.config.force_zeros_for_empty_prompt:
        uncond, uncond_pooled = torch.zeros_like(cond), torch.zeros_like(pooled)
    else:
        raise NotImplementedError
    s = conditioning_size or pixels.shape[-1]
    ids = torch.tensor([[s, s, 0, 0, s, s]] * 2, dtype=torch.float64)
    seen, handle = _record(unet.get_submodule(layer))
    try:
        unet(
            torch.cat([xt, xt]),
            t,
            encoder_hidden_states=torch.cat([uncond, cond]),
            added_cond_kwargs={"text_embeds": torch.cat([uncond_pooled, pooled]), "time_ids": ids},
        )
    finally:
        handle.remove()
    return _self_qkv(unet.get_submodule(layer), seen["x"])


# -------------------------------------------------------------------------------------------- DiT
@torch.no_grad()
def dit_qkv(transformer, vae, scheduler, pixels, layer: str, t: int, class_id: int, seed: int):
    """One image's Q/K/V (2, heads, T, D) at ``layer`` of a float64 DiT; branches [class, null]."""
    net = copy.deepcopy(transformer).double()
    xt = noisy_latent(vae, pixels, t, scheduler, seed)
    seen, handle = _record(net.get_submodule(layer))
    try:
        net(torch.cat([xt, xt]), timestep=torch.tensor([t, t]), class_labels=torch.tensor([class_id, 1000]))
    finally:
        handle.remove()
    return _self_qkv(net.get_submodule(layer), seen["x"])


# ------------------------------------------------------------------------------------ DiffSim-C
def clip_original(encoder, image) -> torch.Tensor:
    """The CLIP processor's input for an ORIGINAL image, as the authors and diffusers' ``ip_adapter_image``
    compute it: a transformers ``CLIPImageProcessor`` with its defaults at the encoder's input size
    (shortest side, bicubic, centre crop, CLIP mean/std), built here from the encoder config alone.
    ``image``: a PIL image (as read from its file) or a (3, H, W) float tensor in [0, 1] (saved to 8 bits
    as a PNG would hold it)."""
    from transformers import CLIPImageProcessor

    side = encoder.config.image_size
    processor = CLIPImageProcessor(size=side, crop_size=side)
    if isinstance(image, torch.Tensor):
        image = Image.fromarray((image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    return processor(images=image.convert("RGB"), return_tensors="pt").pixel_values


@torch.no_grad()
def ip_qkv(pipe, pixels, layer: str, t: int, prompt: str, seed: int, scale: float, original=None):
    """One image's Q (from attn2's input) and IP K/V (of its own IP tokens), float64, [uncond, cond].

    ``original`` (a PIL image or a float tensor): the CLIP encoder sees it through :func:`clip_original`;
    None: it sees the squashed ``pixels`` (uint8-rounded, through the pipeline's processor)."""
    unet = copy.deepcopy(pipe.unet).double()
    for proc in unet.attn_processors.values():
        if hasattr(proc, "to_k_ip"):
            proc.scale = [scale]
    xt = noisy_latent(pipe.vae, pixels, t, pipe.scheduler, seed)
    text = copy.deepcopy(pipe.text_encoder).double()
    emb = []
    for p in ("", prompt):
        ids = pipe.tokenizer(
            [p], padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        emb.append(text(ids)[0])
    if original is not None:
        clip_in = clip_original(pipe.image_encoder, original).double()
    else:
        arr = ((pixels[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        clip_in = pipe.feature_extractor(Image.fromarray(arr), return_tensors="pt").pixel_values.double()
    encoder = copy.deepcopy(pipe.image_encoder).double()
    tokens = encoder(clip_in, output_hidden_states=True).hidden_states[-2]
    zero = encoder(torch.zeros_like(clip_in), output_hidden_states=True).hidden_states[-2]
    module = unet.get_submodule(layer)
    seen, handle = _record(module)
    try:
        unet(
            torch.cat([xt, xt]),
            t,
            encoder_hidden_states=torch.cat(emb),
            added_cond_kwargs={"image_embeds": [torch.cat([zero, tokens])[:, None]]},
        )
    finally:
        handle.remove()
    ip = seen["context"][1][0].reshape(2, -1, seen["context"][1][0].shape[-1])
    proc = module.processor
    return (
        heads(module.to_q(seen["x"]), module.heads),
        heads(proc.to_k_ip[0](ip), module.heads),
        heads(proc.to_v_ip[0](ip), module.heads),
    )
