"""The TikTok consistency protocol: variance of score(first frame, frame k) per video, mean over videos."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..datasets.base import VideoSet
from ..features import Features
from ..metrics.base import Metric
from .provenance import now, provenance
from .runlog import RunLog
from .store import FeatureStore
from .twoafc import EvalOptions, metric_description


def evaluate_consistency(
    metric: Metric, vs: VideoSet, out_dir: str | os.PathLike, options: EvalOptions | None = None
) -> dict[str, Any]:
    """Per video: scores of frames 2..K against frame 1 and their (population) variance; ``results.json``."""
    opt = options or EvalOptions()
    out = Path(out_dir)
    start = time.perf_counter()
    root = Path(vs.root)
    mdesc = metric_description(metric)
    fingerprint = {
        "dataset": vs.dataset,
        "protocol": vs.protocol,
        "options": vs.options,
        "videos": [[v, f] for v, f in vs.videos],
        "metric": mdesc,
    }
    log = RunLog(out, fingerprint, name="videos", overwrite=opt.overwrite)
    store = FeatureStore(lambda paths, _p: metric.embed(paths), opt.batch_size, opt.strict, opt.max_feature_bytes)
    todo = [(v, f) for v, f in vs.videos if not log.done(v)]
    bar = tqdm(
        total=len(vs.videos),
        initial=len(vs.videos) - len(todo),
        desc=f"{vs.dataset} consistency",
        unit="video",
        disable=not opt.progress,
        dynamic_ncols=True,
    )
    try:
        for vid, frames in todo:
            keys = [(str(root / f), None) for f in frames]
            store.ensure(keys)
            good = [(f, k) for f, k in zip(frames, keys, strict=False) if k[0] not in store.errors]
            if not good or good[0][0] != frames[0] or len(good) < 2:
                bad = next(f for f, k in zip(frames, keys, strict=False) if k[0] in store.errors)
                log.write({"id": vid, "error": store.errors[str(root / bad)], "path": bad})
            else:
                first = store.get(good[0][1])
                rest = Features.cat([store.get(k) for _, k in good[1:]])  # type: ignore[misc]
                with torch.no_grad():
                    s = metric.compare(first, rest).float().cpu().numpy()  # type: ignore[arg-type]
                log.write(
                    {
                        "id": vid,
                        "frames": [f for f, _ in good],
                        "scores": s.tolist(),
                        "variance": float(np.var(s)),
                        "mean": float(np.mean(s)),
                        "skipped_frames": [f for f in frames if str(root / f) in store.errors],
                    }
                )
            store.clear()
            bar.update(1)
    finally:
        bar.close()
        log.close()
    recs = [log.records[v] for v, _ in vs.videos if v in log.records]
    ok = [r for r in recs if "error" not in r]
    var = np.array([r["variance"] for r in ok])
    results = {
        "dataset": vs.dataset,
        "protocol": vs.protocol,
        "protocol_options": vs.options,
        "root": vs.root,
        "metric": mdesc,
        "mean_variance": float(var.mean()) if var.size else float("nan"),
        "std_variance": float(var.std()) if var.size else float("nan"),
        "mean_score": float(np.mean([r["mean"] for r in ok])) if ok else float("nan"),
        "n_videos": len(ok),
        "n_total": len(vs.videos),
        "n_errors": len(recs) - len(ok),
        "errors": [{"id": r["id"], "path": r.get("path"), "error": r["error"]} for r in recs if "error" in r],
        "images_embedded": len(store.embedded),
        "resumed_videos": log.resumed,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "finished": now(),
        "notes": vs.notes,
        **provenance(),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return results
