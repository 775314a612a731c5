"""Straightforward float64 references for SD3 (MM-DiT) and PixArt, one image at a time.

Written from the method text of issue 28 and the docs, independently of ``diffsim.backbones``: a float64
copy of each module, the VAE posterior sampled with the seeded ``eps_vae`` (then ``eps``) by hand, the
forward noising written out (SD3: ``(1 - sigma) z0 + sigma eps`` with ``sigma = T / 1000``; PixArt:
``sqrt(abar_T) z0 + sqrt(1 - abar_T) eps`` with ``abar`` recomputed from the beta schedule), the text
conditioning assembled by hand from the tokenizers and encoders (SD3: both CLIPs' penultimate states
side by side, zero-padded to the T5 width, then the T5 states; pooled: both CLIP projections; PixArt: T5
states with their attention mask, the prompt lower-cased as the PixArt pipelines do), the *full*
transformer forward with a pre-hook recording the attention module's input, and Q/K/V projected by hand
(RMS qk-norm written out). Scores: :func:`.reference_backbones.pair_score`.
"""

from __future__ import annotations

import copy
import math

import torch

from .reference_backbones import abar, heads


def _latent(vae, pixels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(z0, eps) in float64: ``(mean + std * eps_vae - shift) * scale``; ``eps_vae`` then ``eps`` from one
    CPU generator seeded ``seed``, drawn in float32."""
    vae = copy.deepcopy(vae).double()
    dist = vae.encode(pixels.double()).latent_dist
    g = torch.Generator("cpu").manual_seed(seed)
    eps_vae = torch.randn(dist.mean.shape, generator=g).double()
    eps = torch.randn(dist.mean.shape, generator=g).double()
    shift = vae.config.shift_factor or 0.0
    return (dist.mean + dist.std * eps_vae - shift) * vae.config.scaling_factor, eps


def _record(module) -> tuple[dict, object]:
    seen: dict = {}

    def hook(mod, args, kwargs):
        seen["x"] = args[0] if args else kwargs["hidden_states"]

    return seen, module.register_forward_pre_hook(hook, with_kwargs=True)


def _rms(x: torch.Tensor, norm) -> torch.Tensor:
    y = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps)
    return y * norm.weight.double() if norm.weight is not None else y


def _ids(tok, prompt: str, length: int) -> torch.Tensor:
    return tok([prompt], padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids


# -------------------------------------------------------------------------------------------- SD3
def sd3_text(pipe, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(states (1, 77 + 256, W_t5), pooled (1, P1 + P2)) for one prompt, float64."""
    clip, pooled = [], []
    for tok, enc in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
        out = copy.deepcopy(enc).double()(_ids(tok, prompt, 77), output_hidden_states=True)
        clip.append(out.hidden_states[-2])
        pooled.append(out.text_embeds)
    t5 = copy.deepcopy(pipe.text_encoder_3).double()(_ids(pipe.tokenizer_3, prompt, 256))[0]
    side = torch.cat(clip, dim=-1)
    side = torch.cat([side, side.new_zeros(*side.shape[:2], t5.shape[-1] - side.shape[-1])], dim=-1)
    return torch.cat([side, t5], dim=1), torch.cat(pooled, dim=-1)


@torch.no_grad()
def sd3_qkv(pipe, pixels: torch.Tensor, block: int, t: int, prompt: str, seed: int):
    """One image's image-stream Q/K/V (2, heads, T, D) at joint block ``block``; branches ["", prompt]."""
    net = copy.deepcopy(pipe.transformer).double()
    z0, eps = _latent(pipe.vae, pixels, seed)
    sigma = t / 1000
    xt = (1 - sigma) * z0 + sigma * eps
    (su, pu), (sc, pc) = sd3_text(pipe, ""), sd3_text(pipe, prompt)
    attn = net.transformer_blocks[block].attn
    seen, handle = _record(attn)
    try:
        net(
            hidden_states=torch.cat([xt, xt]),
            encoder_hidden_states=torch.cat([su, sc]),
            pooled_projections=torch.cat([pu, pc]),
            timestep=torch.tensor([float(t), float(t)], dtype=torch.float64),
        )
    finally:
        handle.remove()
    q, k, v = (heads(p(seen["x"]), attn.heads) for p in (attn.to_q, attn.to_k, attn.to_v))
    if attn.norm_q is not None:
        q, k = _rms(q, attn.norm_q), _rms(k, attn.norm_k)
    return q, k, v


# ----------------------------------------------------------------------------------------- PixArt
@torch.no_grad()
def pixart_qkv(pipe, pixels: torch.Tensor, block: int, t: int, prompt: str, seed: int, max_length: int):
    """One image's self-attention Q/K/V (2, heads, T, D) at ``transformer_blocks.block.attn1``; branches
    ["", prompt]; T5 prompts padded to ``max_length`` (Sigma 300, alpha 120) with their masks."""
    net = copy.deepcopy(pipe.transformer).double()
    z0, eps = _latent(pipe.vae, pixels, seed)
    a = abar(pipe.scheduler, t)
    xt = math.sqrt(a) * z0 + math.sqrt(1 - a) * eps
    t5 = copy.deepcopy(pipe.text_encoder).double()
    states, masks = [], []
    for p in ("", prompt.lower().strip()):  # the pipelines lower-case prompts (clean_caption=False)
        enc = pipe.tokenizer([p], padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
        states.append(t5(enc.input_ids, attention_mask=enc.attention_mask)[0])
        masks.append(enc.attention_mask)
    side = pixels.shape[-1]
    extra = {"resolution": None, "aspect_ratio": None}
    if net.config.use_additional_conditions:
        extra = {
            "resolution": torch.tensor([[side, side]] * 2, dtype=torch.float64),
            "aspect_ratio": torch.tensor([[1.0]] * 2, dtype=torch.float64),
        }
    attn = net.transformer_blocks[block].attn1
    seen, handle = _record(attn)
    try:
        net(
            torch.cat([xt, xt]),
            encoder_hidden_states=torch.cat(states),
            encoder_attention_mask=torch.cat(masks),
            timestep=torch.tensor([t, t]),
            added_cond_kwargs=extra,
        )
    finally:
        handle.remove()
    return tuple(heads(p(seen["x"]), attn.heads) for p in (attn.to_q, attn.to_k, attn.to_v))
