"""An explicit, truncated forward of diffusers' ``UNet2DConditionModel`` that returns Q/K/V.

:class:`TruncatedUNet` runs the U-Net's own modules in the order of ``UNet2DConditionModel.forward``
(time embedding with class / added conditioning such as SDXL's ``text_time``, ``conv_in``, the down
blocks with their skip connections, the mid block, the up blocks) and stops right after the last
requested attention layer's input is known: the ``norm1`` output of its transformer block for a
self-attention layer (``attn1``), the ``norm2`` output for a cross-attention layer (``attn2``, whose K/V
come from the encoder states). Blocks that hold no requested layer run whole, through their own
``forward``; blocks that do are stepped through here. There are no hooks and no exceptions, so the
whole pass can go to ``torch.compile(fullgraph=True)`` and CUDA graphs.

:func:`plan_truncation` says whether a U-Net and a set of layers can be served this way and why not
otherwise; the caller (``StableDiffusionBackbone``) then uses the hook path of :mod:`.capture`.
Not served (hook path): other U-Net classes or subclasses, blocks with requested layers other than
``CrossAttnDownBlock2D`` / ``UNetMidBlock2DCrossAttn`` / ``CrossAttnUpBlock2D``, FreeU, transformer
blocks other than the plain ``layer_norm`` kind (GLIGEN, ada-norm, chunked feed-forward,
``only_cross_attention``), class-conditioned U-Nets, ``image_hint`` conditioning, accelerate offload
hooks, and Python hooks registered on a module this pass only partly runs (they would not fire).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

_PATH = re.compile(
    r"^(down_blocks\.(\d+)|mid_block|up_blocks\.(\d+))\.attentions\.(\d+)"
    r"\.transformer_blocks\.(\d+)\.(attn1|attn2)$"
)
_BLOCK_TYPES = {"down": "CrossAttnDownBlock2D", "mid": "UNetMidBlock2DCrossAttn", "up": "CrossAttnUpBlock2D"}

QKVTuple = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class UnsupportedLayout(ValueError):
    """The explicit forward cannot serve this U-Net / layer set (the message says why)."""


@dataclass(frozen=True)
class Target:
    """One requested attention layer, located in the U-Net's execution order."""

    path: str
    stage: int  # 0..len(down)-1: down blocks, len(down): mid, then up blocks
    attention: int  # index into the block's ``attentions``
    transformer: int  # index into ``transformer_blocks``
    which: str  # "attn1" or "attn2"

    @property
    def order(self) -> tuple[int, int, int, int]:
        return self.stage, self.attention, self.transformer, 0 if self.which == "attn1" else 1


def _exact_type(obj: Any, cls: type) -> bool:
    return type(obj) is cls


def _has_hooks(m: Any) -> bool:
    return bool(m._forward_pre_hooks or m._forward_hooks)


def _locate(unet: Any, path: str) -> Target:
    m = _PATH.match(path)
    if m is None:
        raise UnsupportedLayout(f"{path} is not an attention layer inside a U-Net transformer block")
    n_down = len(unet.down_blocks)
    if m.group(2) is not None:
        stage = int(m.group(2))
    elif m.group(3) is not None:
        stage = n_down + 1 + int(m.group(3))
    else:
        stage = n_down
    return Target(path, stage, int(m.group(4)), int(m.group(5)), m.group(6))


def plan_truncation(unet: Any, paths: list[str] | tuple[str, ...]) -> tuple[Target, ...]:
    """The requested layers in execution order; raises :class:`UnsupportedLayout` if not servable."""
    from diffusers import UNet2DConditionModel

    if not _exact_type(unet, UNet2DConditionModel):
        raise UnsupportedLayout(f"{type(unet).__name__} is not diffusers' UNet2DConditionModel")
    if hasattr(unet, "_hf_hook"):
        raise UnsupportedLayout("the U-Net has accelerate hooks (offloading)")
    if _has_hooks(unet):
        raise UnsupportedLayout("the U-Net has forward hooks registered")
    cfg = unet.config
    if unet.class_embedding is not None:
        raise UnsupportedLayout("class-conditioned U-Nets need class labels")
    if cfg.addition_embed_type == "image_hint":
        raise UnsupportedLayout("image_hint conditioning is not supported")
    if not paths:
        raise UnsupportedLayout("no layers requested")
    targets = sorted({_locate(unet, p) for p in paths}, key=lambda t: t.order)
    blocks = list(unet.down_blocks) + [unet.mid_block] + list(unet.up_blocks)
    for t in targets:
        block = blocks[t.stage]
        kind = "down" if t.stage < len(unet.down_blocks) else "mid" if t.stage == len(unet.down_blocks) else "up"
        if type(block).__name__ != _BLOCK_TYPES[kind]:
            raise UnsupportedLayout(f"{t.path}: block type {type(block).__name__} is not stepped through here")
        if kind == "up" and all(getattr(block, a, None) for a in ("s1", "s2", "b1", "b2")):
            raise UnsupportedLayout("FreeU is enabled")
        t2d = block.attentions[t.attention]
        if not getattr(t2d, "is_input_continuous", False) or type(t2d).__name__ != "Transformer2DModel":
            raise UnsupportedLayout(f"{t.path}: only continuous-input Transformer2DModel is stepped through")
        tb = t2d.transformer_blocks[t.transformer]
        if (
            type(tb).__name__ != "BasicTransformerBlock"
            or tb.norm_type != "layer_norm"
            or tb.only_cross_attention
            or getattr(tb, "_chunk_size", None) is not None
            or getattr(tb, "fuser", None) is not None
        ):
            raise UnsupportedLayout(f"{t.path}: transformer block variant not supported")
        for m in (block, t2d, tb):
            if _has_hooks(m):
                raise UnsupportedLayout(f"{t.path}: a module on the truncated path has hooks registered")
    return tuple(targets)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def project(attn: Any, hidden: torch.Tensor, context: torch.Tensor | None) -> QKVTuple:
    """Q from ``hidden`` and K/V from ``context`` (or ``hidden``) split into heads: (B, heads, T, D)."""
    if getattr(attn, "group_norm", None) is not None:
        hidden = attn.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
    context = hidden if context is None else context
    q = _heads(attn.to_q(hidden), attn.heads)
    k = _heads(attn.to_k(context), attn.heads)
    v = _heads(attn.to_v(context), attn.heads)
    if getattr(attn, "norm_q", None) is not None:
        q = attn.norm_q(q)
    if getattr(attn, "norm_k", None) is not None:
        k = attn.norm_k(k)
    return q, k, v


class TruncatedUNet(nn.Module):
    """``forward(sample, timestep, encoder_hidden_states, added_cond_kwargs=None) -> {path: (q, k, v)}``.

    Each ``q/k/v`` is ``(B, heads, T, D)`` in the U-Net's dtype, exactly what the attention module
    would compute from its input. Everything after the last requested layer is skipped.
    """

    def __init__(self, unet: Any, paths: list[str] | tuple[str, ...]) -> None:
        super().__init__()
        self.targets = plan_truncation(unet, paths)
        self.unet: Any = unet
        self._last = self.targets[-1]
        self._n_down = len(unet.down_blocks)

    # --------------------------------------------------------------- helpers
    def _wanted(self, stage: int, attention: int | None = None, transformer: int | None = None) -> list[Target]:
        return [
            t
            for t in self.targets
            if t.stage == stage
            and (attention is None or t.attention == attention)
            and (transformer is None or t.transformer == transformer)
        ]

    def _is_last(self, stage: int, attention: int, transformer: int, which: str) -> bool:
        t = self._last
        return (t.stage, t.attention, t.transformer, t.which) == (stage, attention, transformer, which)

    def _basic(
        self, stage: int, a: int, k: int, tb: Any, h: torch.Tensor, ctx: torch.Tensor, out: dict[str, QKVTuple]
    ) -> torch.Tensor | None:
        """A ``layer_norm`` BasicTransformerBlock stepped through; None once the last target is captured."""
        wanted = {t.which: t.path for t in self._wanted(stage, a, k)}
        n = tb.norm1(h)
        if tb.pos_embed is not None:
            n = tb.pos_embed(n)
        if "attn1" in wanted:
            out[wanted["attn1"]] = project(tb.attn1, n, None)
            if self._is_last(stage, a, k, "attn1"):
                return None
        h = tb.attn1(n, encoder_hidden_states=None, attention_mask=None) + h
        if h.ndim == 4:
            h = h.squeeze(1)
        if tb.attn2 is not None:
            n = tb.norm2(h)
            if tb.pos_embed is not None:
                n = tb.pos_embed(n)
            if "attn2" in wanted:
                out[wanted["attn2"]] = project(tb.attn2, n, ctx)
                if self._is_last(stage, a, k, "attn2"):
                    return None
            h = tb.attn2(n, encoder_hidden_states=ctx, attention_mask=None) + h
        h = tb.ff(tb.norm3(h)) + h
        if h.ndim == 4:
            h = h.squeeze(1)
        return h

    def _transformer(
        self, stage: int, a: int, t2d: Any, h: torch.Tensor, ctx: torch.Tensor, out: dict[str, QKVTuple]
    ) -> torch.Tensor | None:
        """A Transformer2DModel; stepped through only if it holds a requested layer."""
        if not self._wanted(stage, a):
            return t2d(h, encoder_hidden_states=ctx, return_dict=False)[0]
        b, _, height, width = h.shape
        residual = h
        x = t2d.norm(h)
        if not t2d.use_linear_projection:
            x = t2d.proj_in(x)
            inner = x.shape[1]
            x = x.permute(0, 2, 3, 1).reshape(b, height * width, inner)
        else:
            inner = x.shape[1]
            x = t2d.proj_in(x.permute(0, 2, 3, 1).reshape(b, height * width, inner))
        for k, tb in enumerate(t2d.transformer_blocks):
            if self._wanted(stage, a, k):
                x = self._basic(stage, a, k, tb, x, ctx, out)
                if x is None:
                    return None
            else:
                x = tb(x, encoder_hidden_states=ctx)
        if not t2d.use_linear_projection:
            x = t2d.proj_out(x.reshape(b, height, width, inner).permute(0, 3, 1, 2).contiguous())
        else:
            x = t2d.proj_out(x).reshape(b, height, width, inner).permute(0, 3, 1, 2).contiguous()
        return x + residual

    def _embeddings(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        ctx: torch.Tensor,
        added_cond_kwargs: dict[str, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As the start of ``UNet2DConditionModel.forward``: (sample after conv_in, emb, encoder states)."""
        unet = self.unet
        if unet.config.center_input_sample:
            sample = 2 * sample - 1.0
        emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), None)
        aug = unet.get_aug_embed(emb=emb, encoder_hidden_states=ctx, added_cond_kwargs=added_cond_kwargs or {})
        if aug is not None:
            emb = emb + aug
        if unet.time_embed_act is not None:
            emb = unet.time_embed_act(emb)
        ctx = unet.process_encoder_hidden_states(encoder_hidden_states=ctx, added_cond_kwargs=added_cond_kwargs or {})
        return unet.conv_in(sample), emb, ctx

    # --------------------------------------------------------------- forward
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, QKVTuple]:
        unet = self.unet
        out: dict[str, QKVTuple] = {}
        upsample_size = None
        forward_upsample_size = any(d % (2**unet.num_upsamplers) for d in sample.shape[-2:])
        h: Any
        h, emb, ctx = self._embeddings(sample, timestep, encoder_hidden_states, added_cond_kwargs)
        skips: tuple[torch.Tensor, ...] = (h,)
        for i, block in enumerate(unet.down_blocks):
            if not self._wanted(i):
                if getattr(block, "has_cross_attention", False):
                    h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=ctx)
                else:
                    h, res = block(hidden_states=h, temb=emb)
                skips += res
                continue
            for j, (resnet, t2d) in enumerate(zip(block.resnets, block.attentions, strict=False)):
                h = self._transformer(i, j, t2d, resnet(h, emb), ctx, out)
                if h is None:
                    return out
                skips += (h,)
            if block.downsamplers is not None:
                for down in block.downsamplers:
                    h = down(h)
                skips += (h,)
        stage = self._n_down
        mid = unet.mid_block
        if mid is not None:
            if not self._wanted(stage):
                if getattr(mid, "has_cross_attention", False):
                    h = mid(h, emb, encoder_hidden_states=ctx)
                else:
                    h = mid(h, emb)
            else:
                h = mid.resnets[0](h, emb)
                for j, (t2d, resnet) in enumerate(zip(mid.attentions, mid.resnets[1:], strict=False)):
                    h = self._transformer(stage, j, t2d, h, ctx, out)
                    if h is None:
                        return out
                    h = resnet(h, emb)
        for i, block in enumerate(unet.up_blocks):
            stage = self._n_down + 1 + i
            res = skips[-len(block.resnets) :]
            skips = skips[: -len(block.resnets)]
            if i < len(unet.up_blocks) - 1 and forward_upsample_size:
                upsample_size = skips[-1].shape[2:]
            if not self._wanted(stage):
                if getattr(block, "has_cross_attention", False):
                    h = block(
                        hidden_states=h,
                        temb=emb,
                        res_hidden_states_tuple=res,
                        encoder_hidden_states=ctx,
                        upsample_size=upsample_size,
                    )
                else:
                    h = block(hidden_states=h, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size)
                continue
            for j, (resnet, t2d) in enumerate(zip(block.resnets, block.attentions, strict=False)):
                h = torch.cat([h, res[-1]], dim=1)
                res = res[:-1]
                h = self._transformer(stage, j, t2d, resnet(h, emb), ctx, out)
                if h is None:
                    return out
            if block.upsamplers is not None:
                for up in block.upsamplers:
                    h = up(h, upsample_size)
        return out  # not reached: the last target always returns above
