"""`diffsim sweep NAME --root DIR --layers ... --steps ...`: accuracy over a layer x timestep grid."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError
from .bench_options import bench_metric, dataset_options, default_out, load_set
from .options import diffsim_options, typed_overrides


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@click.command()
@dataset_options
@click.option(
    "--layers",
    "sweep_layers",
    multiple=True,
    required=True,
    help="Layers to sweep, comma-separated or repeated (e.g. up0,up1,up2,down2).",
)
@click.option(
    "--steps",
    "sweep_steps",
    multiple=True,
    required=True,
    help="Paper step indices, comma-separated or repeated (e.g. 100,300,500,700,900).",
)
@diffsim_options
@click.pass_context
def sweep(
    ctx: click.Context,
    name: str,
    root: str | None,
    protocol: str,
    ds_options: tuple[str, ...],
    triplets_file: str | None,
    out_dir: str | None,
    strict: bool,
    strict_ties: bool,
    no_dataset_prompts: bool,
    overwrite: bool,
    quiet: bool,
    sweep_layers: tuple[str, ...],
    sweep_steps: tuple[str, ...],
    metric_name: str | None,
    **opts,
) -> None:
    """Evaluate DiffSim-S on every (layer, step): one U-Net pass per image and step serves all layers."""
    from ..bench import EvalOptions
    from ..bench.sweep import sweep as run_sweep
    from ..datasets.base import VideoSet

    typed = typed_overrides(ctx, opts)
    for setting in ("layer", "step", "timestep"):
        if setting in typed:
            raise ConfigError(f"{typed[setting][0]} does not apply to a sweep: it sweeps --layers and --steps")
    layers = _split(sweep_layers)
    try:
        steps = [int(s) for s in _split(sweep_steps)]
    except ValueError:
        raise ConfigError(f"--steps must be integers; got {', '.join(sweep_steps)}") from None
    data = load_set(name, root, protocol, ds_options, opts["seed"], triplets_file)
    if isinstance(data, VideoSet):
        raise ConfigError("sweeps run on 2AFC benchmarks, not tiktok")
    metric = bench_metric(ctx, metric_name or "diffsim-s", name, opts)
    out = Path(out_dir or default_out(name, metric.name, data.protocol, "-sweep"))
    eo = EvalOptions(
        strict=strict,
        strict_ties=strict_ties,
        use_prompts=not no_dataset_prompts,
        overwrite=overwrite,
        progress=not quiet,
    )
    r = run_sweep(metric, data, layers, steps, out, eo)
    b = r["best"]
    click.echo(
        f"{name} [{r['protocol_label']}]: best {100 * b['accuracy']:.2f}% at layer {b['layer']}, "
        f"step {b['step']}; {r['unet_calls']} U-Net calls for {len(layers)}x{len(steps)} settings"
    )
    click.echo(f"results: {out / 'sweep.csv'}, {out / 'heatmap.png'}")
