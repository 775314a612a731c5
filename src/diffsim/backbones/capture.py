"""Capture Q/K/V at attention modules (or whole modules' outputs) during a forward pass, and stop early.

A forward *pre*-hook on each chosen attention module receives that module's input (for a U-Net
transformer block's ``attn1``: the ``norm1`` output; for ``attn2``: the ``norm2`` output and the encoder
states) and applies the module's own ``to_q/to_k/to_v``, split into its heads. Once every requested module
has been seen the hook raises :class:`StopForward`, so nothing after the last needed layer runs.

This is the default path of every diffusion backbone (the ``compile`` option puts SD's U-Net on the
explicit runner of :mod:`.unet_forward` where it serves); the ViT backbones use :class:`StopForward` too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import torch
import torch.nn as nn

from ..aas import QKV

QKVTuple = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class StopForward(Exception):
    """Raised inside the network once all requested features are captured."""


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


def project_qkv(attn: nn.Module, hidden: torch.Tensor, context: torch.Tensor | None = None) -> QKV:
    """Q from ``hidden`` and K/V from ``context`` (or ``hidden``), as ``(B, heads, T, D)``."""
    if hidden.dim() == 4:  # (B, C, H, W) -> (B, HW, C)
        hidden = hidden.flatten(2).transpose(1, 2)
    return QKV(*project(attn, hidden, context))


def self_attention_qkv(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> QKV:
    """Q/K/V of an attention module from the arguments it is called with (K/V from the encoder states
    when it gets them: an ``attn2``'s text keys)."""
    hidden = args[0] if args else kwargs["hidden_states"]
    context = args[1] if len(args) > 1 else kwargs.get("encoder_hidden_states")
    return project_qkv(module, hidden, context)


Projector = Callable[[nn.Module, tuple, dict[str, Any]], QKV]


@contextmanager
def capture_qkv(
    root: nn.Module, paths: list[str], stop_early: bool = True, project: Projector = self_attention_qkv
) -> Iterator[dict[str, QKV]]:
    """Within the context, forward passes of ``root`` fill the yielded dict ``{path: QKV}``.

    ``project(module, args, kwargs)`` turns a hooked module's call arguments into its Q/K/V
    (default: self-attention, Q/K/V all from the module input).
    """
    modules = dict(root.named_modules())
    store: dict[str, QKV] = {}
    wanted = set(paths)

    def make_hook(path: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]):
            store[path] = project(module, args, kwargs)
            if stop_early and wanted.issubset(store):
                raise StopForward
            return None

        return hook

    handles = [modules[p].register_forward_pre_hook(make_hook(p), with_kwargs=True) for p in paths]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def run_until_captured(fn, *args: Any, **kwargs: Any) -> None:
    """Call ``fn``; a :class:`StopForward` from a capture hook ends it normally."""
    with suppress(StopForward):
        fn(*args, **kwargs)


def check_captured(store: dict[str, QKV], paths: list[str], what: str = "U-Net") -> dict[str, QKV]:
    """``store`` if every requested path was captured, else a RuntimeError naming the missing ones."""
    missing = [p for p in paths if p not in store]
    if missing:
        raise RuntimeError(f"layers never ran in the {what} forward: {missing}")
    return store


def capture(
    net: nn.Module,
    paths: list[str],
    *args: Any,
    stop_early: bool = True,
    project: Projector = self_attention_qkv,
    what: str = "U-Net",
    **kwargs: Any,
) -> dict[str, QKV]:
    """Run ``net(*args, **kwargs)`` with Q/K/V captured at ``paths`` (stopping after the last one)."""
    with capture_qkv(net, paths, stop_early=stop_early, project=project) as store:
        run_until_captured(net, *args, **kwargs)
    return check_captured(store, paths, what)


@contextmanager
def capture_outputs(net: nn.Module, paths: list[str], what: str = "U-Net") -> Iterator[dict[str, Any]]:
    """Within the context, forward passes of ``net`` fill the yielded dict with the outputs of the modules at
    ``paths`` (a module that returns a tuple: its first element) and stop (:class:`StopForward`) once all are
    seen: e.g. a U-Net up block's hidden states, IntroStyle's features."""
    modules = dict(net.named_modules())
    missing = [p for p in paths if p not in modules]
    if missing:
        raise RuntimeError(f"no modules {missing} in the {what}")
    store: dict[str, Any] = {}
    wanted = set(paths)

    def make_hook(path: str):
        def hook(module: nn.Module, args: tuple, output: Any):
            store[path] = output[0] if isinstance(output, tuple) else output
            if wanted.issubset(store):
                raise StopForward

        return hook

    handles = [modules[p].register_forward_hook(make_hook(p)) for p in paths]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()
