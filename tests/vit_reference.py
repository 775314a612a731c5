"""Straightforward ViT AAS / feature references: full forward with output_hidden_states, explicit softmax.

Independent of diffsim's hooks and of diffsim.aas: per pair, float64, by hand.
"""

from __future__ import annotations

import math

import torch

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _parts(model, family: str, layer: int):
    if family == "clip":
        lay = model.vision_model.encoder.layers[layer]
        a = lay.self_attn
        return lay.layer_norm1, a.q_proj, a.k_proj, a.v_proj, a.out_proj, a.num_heads
    if family == "dinov3":
        lay = model.model.layer[layer]
        a = lay.attention
        return lay.norm1, a.q_proj, a.k_proj, a.v_proj, a.o_proj, a.num_heads
    lay = model.encoder.layer[layer]
    a = lay.attention
    return lay.norm1, a.q_proj, a.k_proj, a.v_proj, a.o_proj, a.num_attention_heads


@torch.no_grad()
def layer_input(model, family: str, unit: torch.Tensor, layer: int) -> torch.Tensor:
    """Residual stream entering encoder layer ``layer`` for one (3, S, S) image in [0, 1]."""
    mean, std = (CLIP_MEAN, CLIP_STD) if family == "clip" else (IMAGENET_MEAN, IMAGENET_STD)
    x = (unit[None] - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = model(pixel_values=x, output_hidden_states=True)
    return out.hidden_states[layer][0]


@torch.no_grad()
def layer_output(model, family: str, unit: torch.Tensor, layer: int) -> torch.Tensor:
    mean, std = (CLIP_MEAN, CLIP_STD) if family == "clip" else (IMAGENET_MEAN, IMAGENET_STD)
    x = (unit[None] - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = model(pixel_values=x, output_hidden_states=True)
    return out.hidden_states[layer + 1][0]


def _heads(y: torch.Tensor, heads: int) -> torch.Tensor:
    t, c = y.shape
    return y.view(t, heads, c // heads).transpose(0, 1).double()


def rope_2d(x: torch.Tensor, side: int, base: float, prefix: int) -> torch.Tensor:
    """DINOv3's 2-D rotary embedding on (heads, T, D), float64, written from the method: patch centres at
    ((i + 0.5) / side) * 2 - 1 per axis (row-major patches), D/4 frequencies base^-(4j/D) per axis, angle
    2*pi*coord*freq, each angle used for the pair (j, j + D/2) ("rotate half"); the first ``prefix`` tokens
    (CLS, registers) are not rotated."""
    d = x.shape[-1]
    freqs = base ** (-torch.arange(0, d // 4, dtype=torch.float64) * 4 / d)
    centres = (torch.arange(side, dtype=torch.float64) + 0.5) / side * 2 - 1
    ys, xs = centres.repeat_interleave(side), centres.repeat(side)
    angles = torch.cat([ys[:, None] * freqs, xs[:, None] * freqs], dim=1) * 2 * math.pi  # (T, D/2)
    cos, sin = torch.cos(angles), torch.sin(angles)
    head, tail = x[:, :prefix], x[:, prefix:].double()
    a, b = tail[..., : d // 2], tail[..., d // 2 :]
    rotated = torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)
    return torch.cat([head.double(), rotated], dim=1)


@torch.no_grad()
def qkv(model, family: str, unit: torch.Tensor, layer: int, qkv_input: str):
    norm, q, k, v, out, heads = _parts(model, family, layer)
    x = layer_input(model, family, unit, layer)
    if qkv_input == "normed":
        x = norm(x)
    qh, kh, vh = _heads(q(x), heads), _heads(k(x), heads), _heads(v(x), heads)
    if family == "dinov3":
        cfg = model.config
        side = unit.shape[-1] // cfg.patch_size
        prefix = 1 + cfg.num_register_tokens
        qh, kh = rope_2d(qh, side, cfg.rope_theta, prefix), rope_2d(kh, side, cfg.rope_theta, prefix)
    return qh, kh, vh


def attention(q, k, v):
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ v


def cos(x, y) -> float:
    x, y = x.flatten().double(), y.flatten().double()
    return float(x @ y / (x.norm() * y.norm()))


@torch.no_grad()
def aas_score(
    model,
    family: str,
    ua: torch.Tensor,
    ub: torch.Tensor,
    layer: int,
    qkv_input: str = "normed",
    out_proj: bool = False,
) -> float:
    """(AAS(A,B) + AAS(B,A)) / 2 for one pair, by hand."""
    qa, ka, va = qkv(model, family, ua, layer, qkv_input)
    qb, kb, vb = qkv(model, family, ub, layer, qkv_input)
    lin = _parts(model, family, layer)[4]

    def post(ctx):
        h, t, d = ctx.shape
        flat = ctx.transpose(0, 1).reshape(t, h * d)
        return flat @ lin.weight.double().T + lin.bias.double() if out_proj else flat

    ab = cos(post(attention(qa, kb, vb)), post(attention(qa, ka, va)))
    ba = cos(post(attention(qb, ka, va)), post(attention(qb, kb, vb)))
    return 0.5 * (ab + ba)
