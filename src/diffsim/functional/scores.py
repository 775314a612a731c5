"""Pure score functions over batched tensors: ``f(x, y, backbone, ...) -> (N,)`` per-pair scores.

Inputs are (N, 3, H, W) floating-point tensors in [0, 1] (one side may be a batch of one, which
broadcasts), on any device: they are moved to the backbone's device, resized there when needed
(:mod:`.resize`), and nothing is hashed, cached or detached, so ``score.backward()`` reaches the
pixels. The backbone's parameters stay frozen. On pixels already at the working size these give the
cached ``metric.score`` (same seeded noise, same layers, same reductions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..aas import QKV
from ..aas import score as aas_score
from ..backbones.protocol import ClassCondition, Condition, TextCondition
from ..backbones.torchvision_nets import SCALE, SHIFT
from ..errors import ImageError
from .diffusion import Noise, diffusion_qkv, materialise
from .resize import check_batch, resize_crop, resize_square

#: DiffSim's defaults (as :class:`diffsim.metrics.diffsim_s.DiffSimSettings`)
DEFAULT_PROMPT = "High quality image"
DEFAULT_SEED = 2334
DEFAULT_STEP = 500


def pair_counts(x: torch.Tensor, y: torch.Tensor) -> int:
    """The number of pairs: equal counts pair up, a batch of one broadcasts."""
    nx, ny = x.shape[0], y.shape[0]
    if nx != ny and 1 not in (nx, ny):
        raise ImageError(f"cannot pair {nx} images with {ny}: give equal counts, or one image against many")
    return max(nx, ny)


def _both(
    fn: Callable[[torch.Tensor], dict[str, QKV]], x: torch.Tensor, y: torch.Tensor
) -> tuple[dict[str, QKV], dict[str, QKV]]:
    """Features of both sides: one batch, or two passes when only one side needs gradients (the other
    then runs without building a graph)."""
    if x.requires_grad == y.requires_grad and x.dtype == y.dtype and x.shape[1:] == y.shape[1:]:
        both = fn(torch.cat([x, y]))
        n = x.shape[0]
        return (
            {p: QKV(f.q[:n], f.k[:n], f.v[:n]) for p, f in both.items()},
            {p: QKV(f.q[n:], f.k[n:], f.v[n:]) for p, f in both.items()},
        )
    with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
        fx = fn(x)
    with torch.set_grad_enabled(torch.is_grad_enabled() and y.requires_grad):
        fy = fn(y)
    return fx, fy


def _layer_list(layer: str | Sequence[str]) -> list[str]:
    return [layer] if isinstance(layer, str) else list(layer)


def diffusion_features(
    x: torch.Tensor,
    backbone: Any,
    layers: list[str],
    timestep: int,
    condition: Any,
    seed: int = DEFAULT_SEED,
    *,
    size: int | None = None,
    crop: str = "none",
    single_branch: bool = False,
    noise: Noise | None = None,
    checkpoint: bool = False,
) -> dict[str, QKV]:
    """Q/K/V at the module paths ``layers`` for images (N, 3, H, W) in [0, 1]; differentiable.

    ``condition``: a :data:`~diffsim.backbones.protocol.Condition`, a prompt or a class id.
    """
    backbone = materialise(backbone)
    size = size or int(backbone.default_size)
    px = resize_square(check_batch(x).to(backbone.device), size, crop)
    return diffusion_qkv(
        backbone, px, layers, timestep, condition, seed, noise, single_branch=single_branch, checkpoint=checkpoint
    )


def as_condition(
    backbone: Any, prompt: str | int | Condition, conditioning_size: int | None, ip_scale: float
) -> Condition:
    """The backbone's condition from ``prompt`` (a Condition is kept as given)."""
    if isinstance(prompt, (TextCondition, ClassCondition)):
        return prompt
    if getattr(backbone, "condition_type", None) is ClassCondition:
        return ClassCondition(backbone.class_id(prompt))
    return TextCondition(str(prompt), conditioning_size, float(ip_scale))


def diffsim_s(
    x: torch.Tensor,
    y: torch.Tensor,
    backbone: Any,
    layer: str | Sequence[str] = "up0",
    timestep: int | None = None,
    prompt: str | int | Condition = DEFAULT_PROMPT,
    seed: int = DEFAULT_SEED,
    *,
    step: int | None = None,
    size: int | None = None,
    crop: str = "none",
    similarity: str = "cosine",
    single_branch: bool = False,
    noise: Noise | None = None,
    checkpoint: bool = False,
    conditioning_size: int | None = None,
    layer_kind: str = "self",
    ip_scale: float = 0.5,
    compare_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """DiffSim-S scores (N,) of ``x[i]`` against ``y[i]`` on an SD, SDXL or DiT backbone.

    ``layer``: an alias or module path (several: the mean of their scores); ``timestep`` the actual T,
    or ``step`` the paper's index (neither: step 500); ``prompt``: the text (SD, SDXL) or the ImageNet
    class id / label (DiT), or a whole :data:`~diffsim.backbones.protocol.Condition` (then
    ``conditioning_size`` and ``ip_scale`` are not read); ``size``: working resolution (None: the
    backbone's default). ``noise``: (eps_vae, eps) to use instead of the seeded draw. ``checkpoint``:
    gradient checkpointing in the U-Net and VAE (SD, SDXL). On an IP-Adapter backbone with
    ``layer_kind="cross"`` this is DiffSim-C (see :func:`diffsim_c`).
    """
    backbone = materialise(backbone)
    x, y = check_batch(x, "x"), check_batch(y, "y")
    pair_counts(x, y)
    paths = backbone.resolve(_layer_list(layer), kind=layer_kind)
    if timestep is None:
        timestep = backbone.timestep(step=DEFAULT_STEP if step is None else step)
    else:
        timestep = backbone.timestep(timestep=timestep)
    condition = as_condition(backbone, prompt, conditioning_size, ip_scale)

    def feats(images: torch.Tensor) -> dict[str, QKV]:
        return diffusion_features(
            images,
            backbone,
            paths,
            int(timestep),
            condition,
            seed,
            size=size,
            crop=crop,
            single_branch=single_branch,
            noise=noise,
            checkpoint=checkpoint,
        )

    fx, fy = _both(feats, x, y)
    scores = [aas_score(fx[p], fy[p], similarity, dtype=compare_dtype) for p in paths]
    return scores[0] if len(scores) == 1 else torch.stack(scores).mean(0)


def diffsim_c(
    x: torch.Tensor,
    y: torch.Tensor,
    backbone: Any,
    layer: str | Sequence[str] = "up0.cross",
    timestep: int | None = None,
    prompt: str = DEFAULT_PROMPT,
    seed: int = DEFAULT_SEED,
    *,
    scale: float = 0.5,
    **options: Any,
) -> torch.Tensor:
    """DiffSim-C scores (N,) on an SD + IP-Adapter Plus backbone: Q at ``attn2`` against the IP tokens.

    The adapter's image encoder gets the images through an on-device resize / crop / normalisation
    (the cached path: the pipeline's Pillow processor on uint8 pixels), so scores agree with the cached
    ones up to that resampling (docs/loss.md). Other options as :func:`diffsim_s`.
    """
    return diffsim_s(x, y, backbone, layer, timestep, prompt, seed, layer_kind="cross", ip_scale=scale, **options)


def vit_aas(
    x: torch.Tensor,
    y: torch.Tensor,
    backbone: Any,
    layer: int = -1,
    *,
    size: int = 224,
    resize: int | None = None,
    qkv_input: str = "normed",
    out_proj: bool = False,
) -> torch.Tensor:
    """ViT AAS scores (N,) in encoder layer ``layer`` of a :class:`~diffsim.backbones.vit.ViTBackbone`.

    ``resize``: shortest side before the centred ``size`` crop (None: the family's ratio, CLIP and DINOv3
    1, DINOv2 256/224), as :class:`diffsim.metrics.vit.ViTSettings`.
    """
    x, y = check_batch(x, "x"), check_batch(y, "y")
    pair_counts(x, y)
    index = backbone.layer_index(layer)
    side = resize if resize is not None else backbone.row.resize(size)

    def feats(images: torch.Tensor) -> dict[str, QKV]:
        unit = resize_crop(images.to(backbone.device), side, size)
        return {"qkv": backbone.qkv(backbone.capture(unit, index, grad=True), index, qkv_input)}

    fx, fy = _both(feats, x, y)
    post = None
    if out_proj:
        lin = backbone.out_proj(index)

        def post(t: torch.Tensor) -> torch.Tensor:  # (N, H, T, D) -> (N, T, C)
            n, h, k, d = t.shape
            w, b = lin.weight.to(t.dtype), None if lin.bias is None else lin.bias.to(t.dtype)
            return torch.nn.functional.linear(t.transpose(1, 2).reshape(n, k, h * d), w, b)

    return aas_score(fx["qkv"], fy["qkv"], post=post)


def lpips(
    x: torch.Tensor,
    y: torch.Tensor,
    features: torch.nn.Sequential,
    lin: Sequence[torch.Tensor],
    taps: Sequence[int],
    *,
    size: int | None = 512,
) -> torch.Tensor:
    """LPIPS distances (N,) with a torchvision ``features`` stack, the five linear heads ``lin`` and the
    ReLU indices ``taps`` (:data:`diffsim.metrics.lpips.NETS`); ``size=None`` keeps the input size."""
    x, y = check_batch(x, "x"), check_batch(y, "y")
    pair_counts(x, y)
    p = next(features.parameters())
    wd = torch.promote_types(torch.float32, x.dtype)
    shift = torch.tensor(SHIFT, device=p.device, dtype=wd).view(1, 3, 1, 1)
    scale = torch.tensor(SCALE, device=p.device, dtype=wd).view(1, 3, 1, 1)

    def feats(images: torch.Tensor) -> list[torch.Tensor]:
        u = images.to(p.device)
        if size is not None:
            u = resize_square(u, size)
        h = ((u.to(wd) * 2 - 1 - shift) / scale).to(p.dtype)
        out = []
        for i, layer in enumerate(features[: taps[-1] + 1]):
            h = layer(h)
            if i in taps:
                f = h.to(wd)
                norm = f.pow(2).sum(1, keepdim=True).clamp_min(1e-30).sqrt()  # finite gradient at f = 0
                out.append((f / (norm + 1e-10)).to(p.dtype))
        return out

    if x.requires_grad == y.requires_grad and x.shape[1:] == y.shape[1:]:
        both = feats(torch.cat([x, y]))
        n = x.shape[0]
        fx, fy = [f[:n] for f in both], [f[n:] for f in both]
    else:
        fx, fy = feats(x), feats(y)
    total: torch.Tensor | None = None
    for k, w in enumerate(lin):
        d = (fx[k].to(wd) - fy[k].to(wd)).pow(2)
        v = torch.einsum("nchw,c->nhw", d, w.to(d.device, wd)).mean(dim=(1, 2))
        total = v if total is None else total + v
    assert total is not None
    return total
