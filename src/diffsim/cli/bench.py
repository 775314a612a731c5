"""`diffsim bench NAME --root DIR`: a paper benchmark with any metric; resumable; results.json."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .bench_options import bench_metric, dataset_options, default_out, load_set
from .numbers import COUNT
from .options import diffsim_options
from .scale_options import engine_options, ray_options_from


@click.command()
@dataset_options
@diffsim_options
@engine_options
@click.option(
    "--workers", type=COUNT, default=None, help="With --engine ray: embedding actors, one model each. [default: 1]"
)
@click.pass_context
def bench(
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
    metric_name: str | None,
    **opts,
) -> None:
    """Evaluate a metric on benchmark NAME (2AFC accuracy, or the variance protocol for tiktok)."""
    from ..bench import EvalOptions, evaluate_2afc, evaluate_consistency
    from ..datasets.base import VideoSet

    engine, workers = opts.pop("engine"), opts.pop("workers")
    data = load_set(name, root, protocol, ds_options, opts["seed"], triplets_file)
    if engine == "ray":
        from ..scale.ray_engine import require_ray

        require_ray()
        if isinstance(data, VideoSet):
            raise click.UsageError(f"--engine ray runs the 2AFC benchmarks; {name} is a video benchmark")
    metric = bench_metric(ctx, metric_name, name, opts)
    mname = metric.name
    out = Path(out_dir or default_out(name, mname, data.protocol))
    eo = EvalOptions(
        strict=strict,
        strict_ties=strict_ties,
        use_prompts=not no_dataset_prompts,
        overwrite=overwrite,
        progress=not quiet,
    )
    if isinstance(data, VideoSet):
        r = evaluate_consistency(metric, data, out, eo)
        click.echo(
            f"{name} [{data.protocol}, {data.options['frames']} frames] {mname}: mean variance "
            f"{r['mean_variance']:.6g} over {r['n_videos']} videos"
            + (f", {r['n_errors']} error(s)" if r["n_errors"] else "")
        )
    else:
        embed_fn = None
        if engine == "ray":  # embed every image on the Ray cluster into OUT/features, then score here
            from ..scale.bench import ray_embed_fn

            embed_fn = ray_embed_fn(
                metric,
                data,
                out,
                ray_options_from(opts, workers, None),
                use_prompts=not no_dataset_prompts,
                batch_size=opts.get("batch_size"),
                progress=not quiet,
            )
        r = evaluate_2afc(metric, data, out, eo, embed_fn=embed_fn)
        lo, hi = r["ci95"]
        click.echo(
            f"{name} [{r['protocol_label']}] {mname}: accuracy {100 * r['accuracy']:.2f}% "
            f"(95% CI {100 * lo:.2f}-{100 * hi:.2f}, n={r['n_triplets']}, ties={r['ties']} "
            f"counted {r['tie_rule']}; {r['images_embedded']} images embedded)"
            + (f", {r['n_errors']} error(s)" if r["n_errors"] else "")
        )
    click.echo(f"results: {out / 'results.json'}")


@click.command()
@click.option("--root", "-r", type=click.Path(), required=True, help="TikTok_dataset folder.")
@click.option("--frames", type=COUNT, default=10, show_default=True, help="Frames sampled evenly per video.")
@click.option("--out", "-O", "out_dir", type=click.Path(file_okay=False), default=None)
@click.option("--strict", is_flag=True, help="Stop at the first missing/corrupt image.")
@click.option("--overwrite", is_flag=True, help="Discard a previous run in the output folder.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@diffsim_options
@click.pass_context
def consistency(
    ctx: click.Context,
    root: str,
    frames: int,
    metric_name: str | None,
    out_dir: str | None,
    strict: bool,
    overwrite: bool,
    quiet: bool,
    **opts,
) -> None:
    """Variance of score(first frame, frame k) per TikTok video, averaged (lower is more robust)."""
    from ..bench import EvalOptions, evaluate_consistency
    from ..datasets import VideoSet, load_dataset

    vs = load_dataset("tiktok", root, options={"frames": frames})
    assert isinstance(vs, VideoSet)  # tiktok is a video benchmark
    metric = bench_metric(ctx, metric_name, "tiktok", opts)
    out = Path(out_dir or default_out("tiktok", metric.name, vs.protocol))
    r = evaluate_consistency(metric, vs, out, EvalOptions(strict=strict, overwrite=overwrite, progress=not quiet))
    click.echo(json.dumps({k: r[k] for k in ("mean_variance", "std_variance", "n_videos", "n_errors")}))
    click.echo(f"results: {out / 'results.json'}")
