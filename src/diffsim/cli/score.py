"""`diffsim score REF CAND [CAND ...]`: score every candidate against the reference with any metric."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

import click

from .options import build_metric, diffsim_options


@click.command()
@click.argument("reference", type=str)
@click.argument("candidates", type=str, nargs=-1, required=True)
@diffsim_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per pair (JSON Lines).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def score(
    ctx: click.Context,
    reference: str,
    candidates: tuple[str, ...],
    as_json: bool,
    as_csv: bool,
    quiet: bool,
    metric_name: str | None,
    **opts: Any,
) -> None:
    """Score CANDIDATES against REFERENCE (two images print one number). Default metric: the one for
    --model's kind (DiffSim-S for SD 1.x/2.x, diffsim-s-sdxl for SDXL, diffsim-dit for DiT)."""
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    from ..images import check_image_file

    for path in (reference, *candidates):  # every input is checked before any model loads
        check_image_file(path)
    metric = build_metric(ctx, metric_name, "diffsim-s", opts, auto=True)
    feats = metric.embed([reference, *candidates], progress=not quiet and len(candidates) > 1)
    ref, cands = feats[0], feats[1:]
    layers = getattr(metric, "compare_layers", None)
    per_layer = layers(ref, cands) if layers is not None else {None: metric.compare(ref, cands)}
    cfg = metric.config
    extra = {k: cfg[k] for k in ("timestep", "step", "similarity") if k in cfg}
    rows = [
        {
            "a": reference,
            "b": cand,
            "metric": metric.name,
            **({"layer": name} if name is not None else {}),
            **extra,
            "higher_is_better": metric.higher_is_better,
            "score": float(scores[i]),
        }
        for name, scores in per_layer.items()
        for i, cand in enumerate(candidates)
    ]
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
    elif as_csv:
        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    elif len(rows) == 1:
        click.echo(f"{rows[0]['score']:.6f}")
    else:
        multi = len(per_layer) > 1
        for r in rows:
            click.echo(f"{r['score']:.6f}\t" + (f"{r['layer']}\t" if multi else "") + r["b"])
