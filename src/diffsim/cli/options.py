"""Click options shared by the commands that build a DiffSim-S metric."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..backbones.loading import DEFAULT_MODEL
from ..metrics.diffsim_s import DEFAULT_LAYER, DEFAULT_PROMPT, DEFAULT_SEED, DEFAULT_STEP


def model_option(f: Callable) -> Callable:
    return click.option("--model", "-m", default=DEFAULT_MODEL, show_default=True,
                        help="Hub id, local diffusers folder, or single .safetensors/.ckpt file.")(f)


def _check_cache(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--cache must be a creatable, writable folder: checked while parsing, before any model loads."""
    if value is not None:
        from ..cache import check_cache_dir

        check_cache_dir(value)
    return value


def diffsim_options(f: Callable | None = None, *, preset: bool = False) -> Callable:
    """--model --layer --timestep/--step --prompt --seed --size --device --dtype and friends.

    ``preset=True`` (bench, sweep, consistency): a registered preset decides every value the user does not
    type, so the help shows no DiffSim-S defaults for them.
    """
    if f is None:
        return lambda g: diffsim_options(g, preset=preset)

    def dflt(value: object) -> str:
        return " [default: the metric preset's]" if preset else f" [default: {value}]"

    show = not preset
    opts = [
        click.option("--model", "-m", default=DEFAULT_MODEL, show_default=show,
                     help="Hub id, local diffusers folder, or single .safetensors/.ckpt file."
                          + (dflt(None) if preset else "")),
        click.option("--layer", "-l", "layers", multiple=True,
                     help="Self-attention layer: module path or alias (repeatable)." + dflt(DEFAULT_LAYER)),
        click.option("--timestep", "-t", type=int, default=None, help="Actual DDPM timestep T (0..999)."),
        click.option("--step", "-s", type=int, default=None,
                     help="Paper's step index K: T = scheduler.timesteps[K] after set_timesteps(1000) "
                          "(SD 1.5: T = 1001 - K)." + dflt(DEFAULT_STEP)),
        click.option("--prompt", "-p", default=DEFAULT_PROMPT, show_default=show,
                     help="Text condition." + (dflt(None) if preset else "")),
        click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Noise seed."),
        click.option("--size", type=int, default=512, show_default=show,
                     help="Images are resized to SIZE x SIZE (aspect ratio not kept unless --crop center)."
                          + (dflt(None) if preset else "")),
        click.option("--crop", type=click.Choice(["none", "center"]), default="none", show_default=show,
                     help="'center' cuts the largest centred square before resizing." + (dflt(None) if preset else "")),
        click.option("--device", default=None, help="cpu, cuda, cuda:N or mps. [default: best available]"),
        click.option("--dtype", default=None, help="float32, float16 or bfloat16. [default: fp16 on CUDA, else fp32]"),
        click.option("--single-branch", is_flag=True, help="Run the prompt branch only (half the cost)."),
        click.option("--similarity", type=click.Choice(["cosine", "mse"]), default="cosine", show_default=show,
                     help="cosine: higher is more similar; mse: lower is more similar." + (dflt(None) if preset else "")),
        click.option("--batch-size", type=int, default=4, show_default=show,
                     help="Images per U-Net pass." + (dflt(None) if preset else "")),
        click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None, callback=_check_cache,
                     help="Directory for the on-disk feature cache (safetensors); checked writable first."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_diffsim(model: str, layers: tuple[str, ...], timestep: int | None, step: int | None, prompt: str,
                  seed: int, size: int, crop: str, device: str | None, dtype: str | None, single_branch: bool,
                  similarity: str, batch_size: int, cache_dir: str | None, **_: Any):
    """A DiffSim metric from the shared CLI options."""
    from ..metrics.diffsim_s import DiffSim

    return DiffSim.from_pretrained(model=model, layer=list(layers) or DEFAULT_LAYER, timestep=timestep, step=step,
                                   prompt=prompt, size=size, seed=seed, device=device, dtype=dtype,
                                   single_branch=single_branch, similarity=similarity, crop=crop,
                                   batch_size=batch_size, cache_dir=cache_dir)
