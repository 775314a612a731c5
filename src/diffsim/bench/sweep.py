"""Layer x timestep sweeps of DiffSim-S on a 2AFC benchmark, with the fewest model passes.

Only the metric's public API is used: for each step, ``metric.with_settings(layer=all layers,
step=K).embed`` runs one truncated U-Net pass per image that captures every requested layer at once,
and the backbone keeps each image's clean VAE latent, so a grid of L layers x S steps costs one VAE
pass and S U-Net passes per image instead of L x S of each.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._optional import MissingExtraError, require
from ..datasets.base import Triplet, TripletSet
from ..errors import ConfigError
from ..features import Features
from ..metrics.attention import AttentionMetric
from .manifest import save_manifest, triplets_hash
from .provenance import now, provenance
from .runlog import RunLog
from .stats import outcome, summarize
from .store import FeatureStore, Key
from .twoafc import EvalOptions, metric_description

logger = logging.getLogger(__name__)


def _embedder(metric: AttentionMetric):
    """The store's embed function: paths (and the triplets' prompt, if any) -> features. A prompt reaches
    only a metric that takes one (``accepts_prompt``)."""

    def embed(paths: list[str], prompt: str | None) -> Features:
        if prompt is not None and metric.accepts_prompt:
            return metric.embed(paths, prompt=prompt)
        return metric.embed(paths)

    return embed


def sweep(
    metric: AttentionMetric,
    ts: TripletSet,
    layers: list[str],
    steps: list[int],
    out_dir: str | os.PathLike,
    options: EvalOptions | None = None,
) -> dict[str, Any]:
    """Accuracy for every (layer, step); writes ``sweep.csv``, ``sweep.json`` and ``heatmap.png`` to ``out_dir``.

    Finished timesteps are recorded in ``sweep.jsonl`` and skipped when the sweep is run again.
    """
    if not isinstance(metric, AttentionMetric):
        raise ConfigError(
            "a sweep needs an attention metric (DiffSim on SD, SDXL, DiT or IP-Adapter: layers and timesteps)"
        )
    if not layers or not steps:
        raise ConfigError("a sweep needs at least one layer and one step")
    opt = options or EvalOptions()
    out = Path(out_dir)
    start = time.perf_counter()
    root = Path(ts.root)
    base = metric.with_settings(layer=list(layers))
    use_prompt = opt.use_prompts and metric.accepts_prompt
    fingerprint = {
        "dataset": ts.dataset,
        "protocol": ts.protocol,
        "seed": ts.seed,
        "triplets": triplets_hash(ts.triplets),
        "layers": list(layers),
        "prompts": use_prompt,
        "metric": {k: v for k, v in base.config.items() if k not in ("timestep", "step")},
    }
    log = RunLog(out, fingerprint, name="sweep", overwrite=opt.overwrite)
    save_manifest(ts, out / "manifest.json")
    unet_before, vae_before = base.backbone.passes, base.backbone.images_encoded

    def key(t: Triplet, p: str) -> Key:
        return (str(root / p), t.prompt if use_prompt else None)

    chunks = [ts.triplets[i : i + opt.chunk_size] for i in range(0, len(ts.triplets), opt.chunk_size)]
    errors: dict[str, str] = {}
    embedded = 0
    bar = tqdm(
        total=len(steps) * len(ts.triplets),
        desc=f"{ts.dataset} sweep",
        unit="triplet",
        disable=not opt.progress,
        dynamic_ncols=True,
    )
    try:
        for step in steps:
            if log.done(str(step)):
                bar.update(len(ts.triplets))
                continue
            m = base.with_settings(step=step)
            store = FeatureStore(
                _embedder(m),
                opt.batch_size,
                opt.strict,
                opt.max_feature_bytes,
                progress=opt.progress,
                desc=f"step {step}: embedding images",
            )
            store.errors.update(errors)
            store.plan([[key(t, p) for t in c for p in (t.anchor, t.positive, t.negative)] for c in chunks])
            outcomes: dict[str, list[float]] = {name: [] for name in layers}
            for ci, chunk in enumerate(chunks):
                store.ensure([key(t, p) for t in chunk for p in (t.anchor, t.positive, t.negative)])
                ok = [
                    t
                    for t in chunk
                    if all(str(root / p) not in store.errors for p in (t.anchor, t.positive, t.negative))
                ]
                for i in range(0, len(ok), opt.compare_batch):
                    part = ok[i : i + opt.compare_batch]
                    fa = Features.cat([store.get(key(t, t.anchor)) for t in part])  # type: ignore[misc]
                    fp = Features.cat([store.get(key(t, t.positive)) for t in part])  # type: ignore[misc]
                    fn = Features.cat([store.get(key(t, t.negative)) for t in part])  # type: ignore[misc]
                    sp, sn = m.compare_layers(fa, fp), m.compare_layers(fa, fn)
                    for name in layers:
                        outcomes[name] += [
                            outcome(a, b, m.higher_is_better, opt.strict_ties)
                            for a, b in zip(sp[name].tolist(), sn[name].tolist(), strict=False)
                        ]
                bar.update(len(chunk))
                store.release(ci)
            errors.update(store.errors)
            embedded += len(store.embedded)
            log.write(
                {
                    "id": str(step),
                    "step": step,
                    "timestep": m.timestep,
                    "layers": {n: summarize(o, opt.n_boot, ts.seed) for n, o in outcomes.items()},
                }
            )
    finally:
        bar.close()
        log.close()
    rows = []
    for step in steps:
        rec = log.records[str(step)]
        for name in layers:
            s = rec["layers"][name]
            rows.append(
                {
                    "layer": name,
                    "step": step,
                    "timestep": rec["timestep"],
                    "accuracy": s["accuracy"],
                    "ci_low": s["ci95"][0],
                    "ci_high": s["ci95"][1],
                    "n_triplets": s["n_triplets"],
                }
            )
    with open(out / "sweep.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    try:
        heatmap(rows, layers, steps, out / "heatmap.png", f"{ts.dataset} ({ts.protocol_label})")
    except MissingExtraError as exc:  # the numbers are written; the picture needs the plots extra
        logger.warning("%s; sweep.csv and sweep.json are written, heatmap.png is not", exc)
    best = max(rows, key=lambda r: r["accuracy"])
    result = {
        "dataset": ts.dataset,
        "protocol": ts.protocol,
        "protocol_label": ts.protocol_label,
        "seed": ts.seed,
        "layers": list(layers),
        "steps": list(steps),
        "grid": rows,
        "best": best,
        "metric": metric_description(base),
        "n_total": len(ts.triplets),
        "n_errors_images": len(errors),
        "errors": [{"path": p, "error": e} for p, e in errors.items()],
        "images_vae_encoded": base.backbone.images_encoded - vae_before,
        "images_embedded": embedded,
        "unet_calls": base.backbone.passes - unet_before,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "finished": now(),
        **provenance(),
    }
    (out / "sweep.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def heatmap(rows: list[dict[str, Any]], layers: list[str], steps: list[int], path: Path, title: str = "") -> Path:
    """Layers (rows) x steps (columns), accuracy (%) written in the cells, like the paper's Figure 5."""
    matplotlib = require("matplotlib", "plots", "the sweep heat map")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.full((len(layers), len(steps)), np.nan)
    for r in rows:
        grid[layers.index(r["layer"]), steps.index(r["step"])] = 100 * r["accuracy"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(steps), 0.8 + 0.5 * len(layers)))
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(steps)), [str(s) for s in steps])
    ax.set_yticks(range(len(layers)), layers)
    ax.set_xlabel("step")
    ax.set_ylabel("layer")
    for i in range(len(layers)):
        for j in range(len(steps)):
            ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
