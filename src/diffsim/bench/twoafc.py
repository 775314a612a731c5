"""2AFC evaluation of any :class:`Metric` on a triplet set: resumable, each image embedded once.

Usage::

    ts = load_dataset("nights", "/data/nights")
    results = evaluate_2afc(create_metric("diffsim-s-nights"), ts, "runs/nights")
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..datasets.base import Triplet, TripletSet
from ..features import Features
from ..metrics.base import Metric
from .manifest import save_manifest, triplets_hash
from .provenance import now, provenance
from .runlog import RunLog
from .stats import is_tie, record_outcome, summarize
from .store import EmbedFn, FeatureStore, Key

logger = logging.getLogger(__name__)


@dataclass
class EvalOptions:
    """How a 2AFC run behaves (none of these change the scores)."""

    strict: bool = False  # stop at the first missing/corrupt image instead of recording it
    strict_ties: bool = False  # a tie counts as wrong (the authors' scripts) instead of 0.5
    use_prompts: bool = True  # pass per-triplet prompts to metrics whose embed() accepts prompt=
    chunk_size: int = 256  # triplets per chunk: embed what they need, compare, write, release
    batch_size: int = 16  # images per embed() call
    compare_batch: int = 32  # triplets per compare() call
    max_feature_bytes: int = 8 * 1024**3
    n_boot: int = 1000
    overwrite: bool = False
    progress: bool = False


def metric_description(metric: Metric) -> dict[str, Any]:
    """What results record of a metric: registry name, polarity, paper row and full config."""
    from .paper import paper_row

    cfg = json.loads(json.dumps(metric.config, default=str))
    return {
        "name": metric.name,
        "higher_is_better": bool(metric.higher_is_better),
        "paper_row": paper_row(metric.name),
        "config": cfg,
    }


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def evaluate_2afc(
    metric: Metric,
    ts: TripletSet,
    out_dir: str | os.PathLike,
    options: EvalOptions | None = None,
    embed_fn: EmbedFn | None = None,
) -> dict[str, Any]:
    """Score every triplet, stream records to ``out_dir/triplets.jsonl``, write ``results.json``; return it.

    ``embed_fn(paths, prompt) -> Features`` replaces ``metric.embed`` (e.g. features read from a store
    built by the Ray engine: :func:`diffsim.scale.bench.ray_embed_fn`).
    """
    opt = options or EvalOptions()
    out = Path(out_dir)
    start = time.perf_counter()
    root = Path(ts.root)
    use_prompt = opt.use_prompts and metric.accepts_prompt
    votes_itself = metric.votes  # e.g. the hard-vote ensemble
    mdesc = metric_description(metric)
    fingerprint = {
        "dataset": ts.dataset,
        "protocol": ts.protocol,
        "options": ts.options,
        "seed": ts.seed,
        "triplets": triplets_hash(ts.triplets),
        "metric": mdesc,
        "prompts": use_prompt,
    }
    log = RunLog(out, fingerprint, overwrite=opt.overwrite)
    save_manifest(ts, out / "manifest.json")

    def key(t: Triplet, path: str) -> Key:
        return (str(root / path), t.prompt if use_prompt else None)

    def metric_embed(paths: list[str], prompt: str | None) -> Features:
        return metric.embed(paths, prompt=prompt) if prompt is not None else metric.embed(paths)

    embed = embed_fn if embed_fn is not None else metric_embed
    todo = [t for t in ts.triplets if not log.done(t.id)]
    if log.resumed:
        logger.info("resuming %s: %d of %d triplets already done", out, len(ts.triplets) - len(todo), len(ts.triplets))
    chunks = _chunks(todo, opt.chunk_size)
    store = FeatureStore(
        embed, opt.batch_size, opt.strict, opt.max_feature_bytes, progress=opt.progress, desc="embedding images"
    )
    store.plan([[key(t, p) for t in c for p in (t.anchor, t.positive, t.negative)] for c in chunks])
    bar = tqdm(
        total=len(ts.triplets),
        initial=len(ts.triplets) - len(todo),
        desc=f"{ts.dataset} 2AFC",
        unit="triplet",
        disable=not opt.progress,
        dynamic_ncols=True,
    )
    try:
        for ci, chunk in enumerate(chunks):
            store.ensure([key(t, p) for t in chunk for p in (t.anchor, t.positive, t.negative)])
            ok: list[Triplet] = []
            for t in chunk:
                bad = [p for p in (t.anchor, t.positive, t.negative) if str(root / p) in store.errors]
                if bad:
                    log.write({**t.to_json(), "error": store.errors[str(root / bad[0])], "path": bad[0]})
                    bar.update(1)
                else:
                    ok.append(t)
            for part in _chunks(ok, opt.compare_batch):
                fa = Features.cat([store.get(key(t, t.anchor)) for t in part])  # type: ignore[misc]
                fp = Features.cat([store.get(key(t, t.positive)) for t in part])  # type: ignore[misc]
                fn = Features.cat([store.get(key(t, t.negative)) for t in part])  # type: ignore[misc]
                with torch.no_grad():
                    sp, sn = metric.compare(fa, fp).float().cpu(), metric.compare(fa, fn).float().cpu()
                    votes = metric.decide(fa, fp, fn).tolist() if votes_itself else [None] * len(part)
                for t, a, b, d in zip(part, sp.tolist(), sn.tolist(), votes, strict=False):
                    rec = {**t.to_json(), "s_pos": a, "s_neg": b}
                    if d is not None:
                        rec["decision"] = int(d)
                    rec["outcome"] = record_outcome(rec, metric.higher_is_better, opt.strict_ties)
                    log.write(rec)
                bar.update(len(part))
            store.release(ci)
    finally:
        store.close()
        bar.close()
        log.close()
    results = summarize_run(ts, log.records, mdesc, opt, use_prompt)
    results.update(
        images_embedded=len(store.embedded),
        images_reembedded=store.n_reembedded,
        resumed_triplets=log.resumed,
        wall_time_s=round(time.perf_counter() - start, 3),
        finished=now(),
        **provenance(),
    )
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1, default=str))
    os.replace(tmp, out / "results.json")
    return results


def summarize_run(
    ts: TripletSet, records: dict[str, dict[str, Any]], mdesc: dict[str, Any], opt: EvalOptions, use_prompt: bool
) -> dict[str, Any]:
    """The results dictionary from the records of every triplet of ``ts``."""
    hib = mdesc["higher_is_better"]
    outcomes, errors, ties = [], [], 0
    for t in ts.triplets:
        rec = records.get(t.id)
        if rec is None:
            continue
        if "error" in rec:
            errors.append({"id": t.id, "path": rec.get("path"), "error": rec["error"]})
            continue
        ties += is_tie(rec)
        outcomes.append(record_outcome(rec, hib, opt.strict_ties))
    summary = summarize(outcomes, opt.n_boot, ts.seed)
    return {
        "dataset": ts.dataset,
        "protocol": ts.protocol,
        "protocol_label": ts.protocol_label,
        "protocol_options": ts.options,
        "seed": ts.seed,
        "root": ts.root,
        "metric": mdesc,
        **summary,
        "n_total": len(ts.triplets),
        "n_errors": len(errors),
        "errors": errors,
        "ties": ties,
        "tie_rule": "wrong (--strict-ties)" if opt.strict_ties else "0.5",
        "polarity": "higher is closer" if hib else "lower is closer",
        "dataset_prompts": use_prompt,
        "notes": ts.notes,
    }
