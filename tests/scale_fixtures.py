"""A small gallery (two folders of smooth random images) and helpers to compare two stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_gallery(folder: Path, n: int = 10, seed: int = 0) -> Path:
    """``folder/{a,b}/img-XX.png``: ``n`` distinct smooth random images of various sizes."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        low = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        im = Image.fromarray(low).resize((64 + 4 * (i % 3), 64), Image.BICUBIC)
        p = folder / ("a" if i % 2 else "b") / f"img-{i:02d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        im.save(p)
    return folder


def assert_same_store(a, b, atol: float = 1e-4) -> None:
    """Same ids, paths and hashes; features and pooled vectors equal within ``atol``; no id twice."""
    ids_a, ids_b = a.ids(), b.ids()
    assert len(ids_b) == len(set(ids_b)), "an image id is in the table twice"
    assert sorted(ids_a) == sorted(ids_b)
    ra = {r["id"]: (r["path"], r["hash"]) for r in a.rows()}
    rb = {r["id"]: (r["path"], r["hash"]) for r in b.rows()}
    assert ra == rb
    order = sorted(ids_a)
    fa, fb = a.load(order), b.load(order)
    assert fa.names == fb.names == order
    for k in fa.tensors:
        torch.testing.assert_close(fa.tensors[k], fb.tensors[k], atol=atol, rtol=1e-4)
    pa = dict(zip(*a.pooled(), strict=False))
    pb = dict(zip(*b.pooled(), strict=False))
    for i in order:
        np.testing.assert_allclose(pa[i], pb[i], atol=atol, rtol=1e-4)


def shard_files(store) -> set[str]:
    return {p.name[: -len(".safetensors")] for p in store.shard_dir.glob("*.safetensors")}
