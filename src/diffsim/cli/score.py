"""`diffsim score REF CAND [CAND ...]`: score every candidate against the reference."""
from __future__ import annotations

import csv
import json
import sys

import click

from .options import build_diffsim, diffsim_options


@click.command()
@click.argument("reference", type=str)
@click.argument("candidates", type=str, nargs=-1, required=True)
@diffsim_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per pair (JSON Lines).")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def score(reference: str, candidates: tuple[str, ...], as_json: bool, as_csv: bool, quiet: bool, **opts) -> None:
    """Score CANDIDATES against REFERENCE with DiffSim-S (two images print one number)."""
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    metric = build_diffsim(**opts)
    feats = metric.embed([reference, *candidates], progress=not quiet and len(candidates) > 1)
    ref, cands = feats[0], feats[1:]
    per_layer = metric.compare_layers(ref, cands)
    rows = [
        {"a": reference, "b": cand, "layer": name, "timestep": metric.timestep, "step": metric.step,
         "similarity": metric.similarity, "score": float(scores[i])}
        for name, scores in per_layer.items() for i, cand in enumerate(candidates)
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
