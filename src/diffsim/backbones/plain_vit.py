"""A plain pre-norm ViT (the DINO / OpenAI-CLIP image tower) with loaders for the peers' checkpoint layouts.

One module covers the towers DreamSim and CSD use: patch convolution, a class token, learned position
embeddings, an optional LayerNorm before the blocks (CLIP's ``ln_pre``), pre-norm blocks (``qkv`` in one
linear layer, GELU or CLIP's QuickGELU) and a final LayerNorm. Sizes are read from the weights; heads are
``width // 64`` (ViT-S/B/L). Two key layouts are read:

* the DINO layout (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N.attn.qkv`` ...; DreamSim's
  ``*_pretrain.pth.tar`` CLIP towers store ``ln_pre`` as ``pos_drop``);
* the OpenAI CLIP ``visual`` layout (``conv1``, ``class_embedding``, ``transformer.resblocks.N.attn.in_proj_*``
  ...), as in CSD's checkpoint.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError


class QuickGELU(nn.Module):
    """CLIP's activation ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """``qkv`` in one linear layer, then the output projection ``proj``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, quick_gelu: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = QuickGELU() if quick_gelu else nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int, bias: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch, bias=bias)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, heads: int, hidden: int, quick_gelu: bool, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden, quick_gelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.attn.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, d)
        x = x + self.attn.proj(a)
        return x + self.mlp(self.norm2(x))


class PlainViT(nn.Module):
    """The tower; ``forward`` returns every token after each block (``hidden``) and the final-normed tokens."""

    def __init__(
        self,
        dim: int,
        depth: int,
        patch: int,
        tokens: int,
        hidden: int,
        ln_pre: bool,
        quick_gelu: bool,
        eps: float,
        patch_bias: bool = True,
    ) -> None:
        super().__init__()
        self.patch = patch
        self.patch_embed = PatchEmbed(dim, patch, patch_bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.ln_pre = nn.LayerNorm(dim, eps=eps) if ln_pre else nn.Identity()
        self.blocks = nn.ModuleList([Block(dim, max(1, dim // 64), hidden, quick_gelu, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        if x.shape[1] + 1 != self.pos_embed.shape[1]:
            side = int(round((self.pos_embed.shape[1] - 1) ** 0.5)) * self.patch
            raise ConfigError(f"this ViT takes {side} x {side} images (size={side}); got {x.shape[1]} patches")
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.ln_pre(x)
        hidden = []
        for blk in self.blocks:
            x = blk(x)
            hidden.append(x)
        return hidden, self.norm(x)


def from_dino_state(state: dict[str, torch.Tensor], quick_gelu: bool, eps: float) -> PlainViT:
    """A :class:`PlainViT` with ``state`` (DINO layout; ``pos_drop.*`` is CLIP's ``ln_pre``) loaded strictly."""
    state = {("ln_pre." + k[len("pos_drop.") :] if k.startswith("pos_drop.") else k): v for k, v in state.items()}
    w = state["patch_embed.proj.weight"]
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    vit = PlainViT(
        dim=w.shape[0],
        depth=depth,
        patch=w.shape[-1],
        tokens=state["pos_embed"].shape[1],
        hidden=state["blocks.0.mlp.fc1.weight"].shape[0],
        ln_pre="ln_pre.weight" in state,
        quick_gelu=quick_gelu,
        eps=eps,
        patch_bias="patch_embed.proj.bias" in state,
    )
    vit.load_state_dict(state, strict=True)
    return vit


_CLIP_KEYS = {
    "ln_1": "norm1",
    "ln_2": "norm2",
    "attn.in_proj_weight": "attn.qkv.weight",
    "attn.in_proj_bias": "attn.qkv.bias",
    "attn.out_proj": "attn.proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}


def clip_to_dino(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI CLIP ``visual`` keys to the DINO layout (``proj`` is left out: the caller takes it)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k == "conv1.weight":
            out["patch_embed.proj.weight"] = v
        elif k == "class_embedding":
            out["cls_token"] = v.reshape(1, 1, -1)
        elif k == "positional_embedding":
            out["pos_embed"] = v.unsqueeze(0)
        elif k.startswith("ln_pre."):
            out[k] = v
        elif k.startswith("ln_post."):
            out["norm." + k[len("ln_post.") :]] = v
        elif k.startswith("transformer.resblocks."):
            rest = k[len("transformer.resblocks.") :]
            i, _, name = rest.partition(".")
            for old, new in _CLIP_KEYS.items():
                if name.startswith(old):
                    name = new + name[len(old) :]
                    break
            out[f"blocks.{i}.{name}"] = v
        elif k != "proj":
            raise KeyError(f"unexpected CLIP visual key {k!r}")
    return out
