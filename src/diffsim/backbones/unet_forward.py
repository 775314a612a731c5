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
otherwise. A backbone reaches this module through one interface: :class:`ExplicitRunner` (its ``runner``,
set by the ``compile`` option; None, the default: the hook path of :mod:`.capture`) and
:func:`run_checkpointed` (the differentiable path's ``checkpoint=True``). The hook path serves what is
not served here: other U-Net classes or subclasses, blocks with requested layers other than
``CrossAttnDownBlock2D`` / ``UNetMidBlock2DCrossAttn`` / ``CrossAttnUpBlock2D``, FreeU, transformer
blocks other than the plain ``layer_norm`` kind (GLIGEN, ada-norm, chunked feed-forward,
``only_cross_attention``), class-conditioned U-Nets, ``image_hint`` conditioning, IP-Adapters, accelerate
offload hooks, and Python hooks registered on a module this pass only partly runs (they would not fire).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..aas import QKV
from ..errors import ConfigError
from .capture import QKVTuple, project

logger = logging.getLogger(__name__)

_PATH = re.compile(
    r"^(down_blocks\.(\d+)|mid_block|up_blocks\.(\d+))\.attentions\.(\d+)"
    r"\.transformer_blocks\.(\d+)\.(attn1|attn2)$"
)
_BLOCK_TYPES = {"down": "CrossAttnDownBlock2D", "mid": "UNetMidBlock2DCrossAttn", "up": "CrossAttnUpBlock2D"}


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
    if cfg.encoder_hid_dim_type == "ip_image_proj":
        raise UnsupportedLayout("an IP-Adapter is loaded (its K/V come from the image tokens)")
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


def _cross(block: Any, ctx: torch.Tensor) -> dict[str, torch.Tensor]:
    """The encoder states as a keyword for a block that runs whole, if it has cross-attention."""
    return {"encoder_hidden_states": ctx} if getattr(block, "has_cross_attention", False) else {}


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
        for which, norm, context in (("attn1", tb.norm1, None), ("attn2", tb.norm2, ctx)):
            attn = getattr(tb, which)
            if attn is None:  # no cross-attention
                continue
            n = norm(h)
            if tb.pos_embed is not None:
                n = tb.pos_embed(n)
            if which in wanted:
                out[wanted[which]] = project(attn, n, context)
                if self._is_last(stage, a, k, which):
                    return None
            h = attn(n, encoder_hidden_states=context, attention_mask=None) + h
            if h.ndim == 4:
                h = h.squeeze(1)
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
                h, res = block(hidden_states=h, temb=emb, **_cross(block, ctx))
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
                h = mid(h, emb, **_cross(mid, ctx))
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
                kw = _cross(block, ctx)
                h = block(hidden_states=h, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size, **kw)
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


def run_checkpointed(
    unet: Any, sample: torch.Tensor, t: torch.Tensor, layers: list[str], inputs: dict[str, Any], stop_early: bool
) -> dict[str, QKV]:
    """The truncated U-Net, eager, keeping the graph, the blocks that run whole checkpointed (SD, SDXL)."""
    try:
        if not stop_early:
            raise UnsupportedLayout("the explicit U-Net always stops after the last layer")
        runner = TruncatedUNet(unet, tuple(layers))
    except UnsupportedLayout as exc:
        raise ConfigError(
            f"gradient checkpointing is offered for U-Net backbones (SD, SDXL) through the explicit U-Net: {exc}"
        ) from exc
    with gradient_checkpointing(unet):
        raw = runner(sample, t, inputs["encoder_hidden_states"], inputs.get("added_cond_kwargs"))
    return {p: QKV(*raw[p]) for p in layers}


class _VaeMoments(nn.Module):
    """``pixels -> (mean, std)`` of the VAE posterior (a plain function of tensors, for torch.compile)."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        post = self.vae.encode(x).latent_dist
        return post.mean, post.std


def _pad(x: torch.Tensor) -> torch.Tensor:
    """Repeat the last row of ``x`` up to the next power of two rows (every op is per image)."""
    n = 1 << max(0, (x.shape[0] - 1).bit_length())
    return x if x.shape[0] >= n else torch.cat([x, x[-1:].expand(n - x.shape[0], *x.shape[1:])])


class ExplicitRunner:
    """A backbone's ``runner``: the U-Net pass through :class:`TruncatedUNet` (and the VAE encoder), under
    ``torch.compile(mode)`` unless ``mode`` is None. Compiled passes pad batches to a power of two, and after
    a second batch size torch recompiles once with a dynamic batch dimension (at most two compilations per
    layer set); each new input shape's time is logged. :meth:`run` returns None where only hooks serve."""

    def __init__(self, unet: Any, vae: Any, device: torch.device, mode: str | None = None) -> None:
        self.unet, self.device, self.mode = unet, device, mode
        self.last_path = ""  # "explicit" or "hooks": how the last U-Net pass ran (for tests and benchmarks)
        self._vae = _VaeMoments(vae) if mode is None else torch.compile(_VaeMoments(vae), mode=mode)
        self._runners: dict[tuple[str, ...], Any] = {}
        self._fallback_logged: set[tuple[str, ...]] = set()
        self._timed: set[tuple] = set()

    @property
    def copy_outputs(self) -> bool:
        """Outputs need fresh storage (CUDA graphs reuse their buffers on the next call)."""
        return self.mode == "reduce-overhead"

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE posterior's (mean, std) of pixels ``x``."""
        n = x.shape[0]
        x = (_pad(x) if self.mode else x).contiguous(memory_format=torch.channels_last)
        mean, std = self._call("VAE encoder", self._vae, x)
        return mean[:n], std[:n]

    def pad(self, z0: torch.Tensor, layers: list[str], stop_early: bool) -> torch.Tensor:
        """Latents as the pass takes them (padded when a compiled runner will serve them)."""
        return _pad(z0) if self.mode and stop_early and self._runner(tuple(layers)) is not None else z0

    def run(
        self, sample: torch.Tensor, t: torch.Tensor, layers: list[str], inputs: dict[str, Any], stop_early: bool
    ) -> dict[str, QKV] | None:
        runner = self._runner(tuple(layers)) if stop_early else None
        self.last_path = "hooks" if runner is None else "explicit"
        if runner is None:
            return None
        raw = self._call("truncated U-Net", runner, sample, t, inputs["encoder_hidden_states"])
        return {p: QKV(*raw[p]) for p in layers}

    def _runner(self, layers: tuple[str, ...]) -> Any:
        """The (compiled) truncated forward for ``layers``, or None where only hooks can serve (checked on
        every call: hooks registered on the path since the last call force the hook path)."""
        try:
            plan_truncation(self.unet, layers)
        except UnsupportedLayout as exc:
            if layers not in self._fallback_logged:
                logger.info("hook path for %s: %s", ", ".join(layers), exc)
                self._fallback_logged.add(layers)
            return None
        if layers not in self._runners:
            runner: Any = TruncatedUNet(self.unet, layers)
            if self.mode:
                runner = torch.compile(runner, mode=self.mode, fullgraph=True)
            self._runners[layers] = runner
        return self._runners[layers]

    def _call(self, what: str, fn: Any, *args: torch.Tensor) -> Any:
        """Call ``fn``; compiled, log how long each new input shape took (compilation) once."""
        key = (what, id(fn), tuple(tuple(a.shape) for a in args))
        if not self.mode or key in self._timed:
            return fn(*args)
        start = time.perf_counter()
        out = fn(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        first = not any(k[0] == what for k in self._timed)
        self._timed.add(key)
        level = logging.INFO if first else logging.DEBUG
        logger.log(level, "compiled %s for input shapes %s in %.1f s", what, key[2], time.perf_counter() - start)
        return out
