"""Click options shared by the commands that build a metric, and the one place that builds it.

Only the options the user actually typed are forwarded to ``create_metric`` (so a preset keeps its own
defaults), each checked against the chosen metric's settings; ``--set KEY=VALUE`` reaches any setting.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from ..defaults import DEFAULT_LAYER, DEFAULT_MODEL, DEFAULT_PROMPT, DEFAULT_SEED, DEFAULT_STEP
from ..errors import ConfigError
from .numbers import COUNT, NON_NEGATIVE, SEED, SIZE

# CLI option -> setting name; forwarded only when typed on the command line
FORWARD = {
    "model": "model",
    "layers": "layer",
    "timestep": "timestep",
    "step": "step",
    "prompt": "prompt",
    "seed": "seed",
    "size": "size",
    "crop": "crop",
    "device": "device",
    "dtype": "dtype",
    "single_branch": "single_branch",
    "similarity": "similarity",
    "batch_size": "batch_size",
    "cache_dir": "cache_dir",
}
FLAGS = {"layers": "--layer", "cache_dir": "--cache", "single_branch": "--single-branch", "batch_size": "--batch-size"}


def model_option(f: Callable) -> Callable:
    return click.option(
        "--model",
        "-m",
        default=None,
        help=f"Hub id, local diffusers folder, or single .safetensors/.ckpt file. "
        f"[default: the metric's model; DiffSim-S: {DEFAULT_MODEL}]",
    )(f)


def metric_options(f: Callable) -> Callable:
    """--metric NAME and --set KEY=VALUE."""
    opts = [
        click.option(
            "--metric",
            "metric_name",
            default=None,
            help="Registered metric (`diffsim list`). [default: diffsim-s, or the benchmark's preset]",
        ),
        click.option(
            "--set",
            "set_items",
            multiple=True,
            metavar="KEY=VALUE",
            help="Any setting of the metric, e.g. --set out_proj=true --set layer=-2 (repeatable; "
            "values are parsed as JSON where they can be).",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _check_cache(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--cache must be a creatable, writable folder: checked while parsing, before any model loads."""
    if value is not None:
        from ..cache import check_cache_dir

        check_cache_dir(value)
    return value


def diffsim_options(f: Callable) -> Callable:
    """--model --layer --timestep/--step --prompt --seed --size --device --dtype and friends."""
    opts = [
        model_option,
        click.option(
            "--layer",
            "-l",
            "layers",
            multiple=True,
            help=f"Self-attention layer: module path or alias (repeatable). "
            f"[default: the preset's; diffsim-s: {DEFAULT_LAYER}]",
        ),
        click.option("--timestep", "-t", type=NON_NEGATIVE, default=None, help="Actual DDPM timestep T (0..999)."),
        click.option(
            "--step",
            "-s",
            type=NON_NEGATIVE,
            default=None,
            help=f"Paper's step index K: T = scheduler.timesteps[K] after set_timesteps(1000) "
            f"(SD 1.5: T = 1001 - K). [default: the preset's; diffsim-s: {DEFAULT_STEP}]",
        ),
        click.option("--prompt", "-p", default=None, help=f"Text condition. [default: {DEFAULT_PROMPT!r}]"),
        click.option("--seed", type=SEED, default=DEFAULT_SEED, show_default=True, help="Noise seed."),
        click.option(
            "--size",
            type=SIZE,
            default=None,
            help="Images are resized to SIZE x SIZE (aspect ratio not kept unless --crop center). "
            "[default: the metric's; DiffSim-S 512]",
        ),
        click.option(
            "--crop",
            type=click.Choice(["none", "center"]),
            default=None,
            help="'center' cuts the largest centred square before resizing. [default: none]",
        ),
        click.option("--device", default=None, help="cpu, cuda, cuda:N or mps. [default: best available]"),
        click.option("--dtype", default=None, help="float32, float16 or bfloat16. [default: fp16 on CUDA, else fp32]"),
        click.option("--single-branch", is_flag=True, help="Run the prompt branch only (half the cost)."),
        click.option(
            "--similarity",
            type=click.Choice(["cosine", "mse"]),
            default=None,
            help="cosine: higher is more similar; mse: lower is more similar. [default: cosine]",
        ),
        click.option("--batch-size", type=COUNT, default=None, help="Images per network pass. [default: the metric's]"),
        click.option(
            "--cache",
            "cache_dir",
            type=click.Path(file_okay=False),
            default=None,
            callback=_check_cache,
            help="Directory for the on-disk feature cache (safetensors); checked writable first.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return metric_options(f)


def parse_value(text: str) -> Any:
    """A --set value: JSON where it parses (numbers, true/false/null, lists), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_sets(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"--set takes KEY=VALUE; got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = parse_value(v.strip())
    return out


def typed_overrides(ctx: click.Context, opts: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """{setting: (flag, value)} for the metric options given on the command line."""
    out: dict[str, tuple[str, Any]] = {}
    for opt, setting in FORWARD.items():
        src = ctx.get_parameter_source(opt)
        if src is not None and src.name == "COMMANDLINE":
            v = opts[opt]
            flag = FLAGS.get(opt, "--" + opt.replace("_", "-"))
            out[setting] = (flag, list(v) if opt == "layers" else v)
    return out


def build_metric(
    ctx: click.Context,
    name: str | None,
    default: str,
    opts: dict[str, Any],
    optional: tuple[str, ...] = ("seed",),
    auto: bool = False,
):
    """``create_metric`` for --metric (default ``default``) with the typed options and every ``--set``.

    A typed option the metric has no setting for is an error naming the flag, except those in
    ``optional`` (e.g. ``--seed``, which also seeds a benchmark's triplet sampling). With ``auto`` and no
    --metric, a typed --model picks the metric for its kind (SDXL: diffsim-s-sdxl, DiT: diffsim-dit).
    """
    from ..registry import create_metric, metric_for_model, metric_info

    if name is None and auto and opts.get("model"):
        sets = parse_sets(opts.get("set_items", ()))
        name = metric_for_model(opts["model"], sets.get("revision"), set(sets))
    info = metric_info(name or default)
    valid = set(info.settings_names())
    over: dict[str, Any] = {}
    for setting, (flag, value) in typed_overrides(ctx, opts).items():
        if setting in valid:
            over[setting] = value
        elif setting not in optional:
            raise ConfigError(
                f"{flag} does not apply to metric {info.name!r} (its settings: "
                f"{', '.join(sorted(valid))}; use --set KEY=VALUE)"
            )
    over.update(parse_sets(opts.get("set_items", ())))
    return create_metric(info.name, **over)
