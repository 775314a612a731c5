"""Capture Q/K/V at attention modules during a forward pass, and stop the pass early.

A forward *pre*-hook on each chosen attention module receives that module's input (for a U-Net
transformer block's ``attn1``: the ``norm1`` output) and applies the module's own ``to_q/to_k/to_v``,
split into its heads. Once every requested module has been seen the hook raises
:class:`StopForward`, so nothing after the last needed layer runs.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from ..aas import QKV


class StopForward(Exception):
    """Raised inside the network once all requested features are captured."""


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def project_qkv(attn: nn.Module, hidden: torch.Tensor, context: torch.Tensor | None = None) -> QKV:
    """Q from ``hidden`` and K/V from ``context`` (or ``hidden``), as ``(B, heads, T, D)``."""
    if hidden.dim() == 4:  # (B, C, H, W) -> (B, HW, C)
        hidden = hidden.flatten(2).transpose(1, 2)
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
    return QKV(q, k, v)


def self_attention_qkv(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> QKV:
    """Q/K/V of a self-attention module from the arguments it is called with."""
    return project_qkv(module, args[0] if args else kwargs["hidden_states"])


Projector = Callable[[nn.Module, tuple, dict[str, Any]], QKV]


@contextmanager
def capture_qkv(root: nn.Module, paths: list[str], stop_early: bool = True,
                project: Projector = self_attention_qkv) -> Iterator[dict[str, QKV]]:
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
    try:
        fn(*args, **kwargs)
    except StopForward:
        pass
