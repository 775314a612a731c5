"""What runs on the Ray cluster: the pipeline's decoder in CPU tasks, its mapper and writer in actors.

Rows flow as ``{"id", "path", "bytes"}`` (encoded image; no ``bytes`` column: read the files) -> :func:`decode_batch`
(:func:`diffsim.gallery.decode.decode_record`, the decoder of every engine) ->
``{"id", "path", "hash", "status", "reason", "size", "pixels"}`` (``status``: ``embed``, ``skip`` for an
image already stored with the same content, ``fail`` for an unreadable one) -> :class:`EmbedWorker` ->
``{"id", "path", "hash", "status", "reason", "shard", "row", "checksum"}``. Only these small
columns come back to the driver: the features go straight from the actor into a shard file.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..gallery.writer import shard_name

logger = logging.getLogger(__name__)

__all__ = ["EmbedWorker", "decode_batch", "shard_name"]

_KNOWN: dict[str, dict[str, str]] = {}  # per worker process: the store's {id: hash}, fetched once per build


def _known(ref: Any) -> dict[str, str]:
    if ref is None or isinstance(ref, dict):
        return ref or {}
    key = ref.hex()
    if key not in _KNOWN:
        import ray

        _KNOWN.clear()
        _KNOWN[key] = ray.get(ref)
    return _KNOWN[key]


def decode_batch(
    batch: dict[str, np.ndarray], preprocess: Any, known: Any = None, max_pixels: int | None = None
) -> dict[str, np.ndarray]:
    """Hash, skip images stored with that hash, decode and preprocess the others (the pipeline's decoder).

    ``known``: the store's ``{id: hash}``, or a Ray object reference to it; ``max_pixels``: the driver's
    pixel limit (a worker process does not see ``--max-pixels``).
    """
    from ..gallery.decode import decode_record
    from ..gallery.readers import Record

    table = _known(known)
    out: dict[str, list[Any]] = {k: [] for k in ("id", "path", "hash", "status", "reason", "size", "pixels")}
    for i in range(len(batch["id"])):
        data = batch["bytes"][i] if "bytes" in batch else None  # no bytes column: files, read here
        rec = Record(str(batch["id"][i]), str(batch["path"][i]), None if data is None else bytes(data))
        d = decode_record(rec, preprocess, table, max_pixels)
        px = d.pixels
        size, pixels = (int(px.shape[-1]), px.numpy().tobytes()) if px is not None else (0, b"")
        for k, v in zip(out, (d.id, d.path, d.hash, d.status, d.reason, size, pixels), strict=True):
            out[k].append(v)
    return {k: np.array(v, dtype=np.int64 if k == "size" else object) for k, v in out.items()}


class EmbedWorker:
    """One Ray actor: loads the store's metric once (the pipeline's mapper), then embeds batches and
    writes one shard per batch (the pipeline's writer, under a name fixed by the batch's content)."""

    def __init__(
        self,
        store_dir: str,
        metric_name: str,
        settings: dict[str, Any],
        runtime: dict[str, Any],
        threads: int = 1,
    ) -> None:
        import torch

        from ..gallery.mapper import Mapper
        from ..gallery.store import GalleryStore
        from ..registry import create_metric

        torch.set_num_threads(max(1, int(threads)))  # the actor's CPUs, not every core of the node
        self.store = GalleryStore.open(store_dir)
        metric = create_metric(metric_name, **{**settings, **runtime})
        self.store.check_metric(metric)
        self.mapper = Mapper(metric, runtime.get("batch_size"))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        ids, hashes = [str(v) for v in batch["id"]], [str(v) for v in batch["hash"]]
        status = [str(v) for v in batch["status"]]
        out: dict[str, list[Any]]  # one column each, of str, int or bytes
        out = {
            "id": ids,
            "path": [str(v) for v in batch["path"]],
            "hash": hashes,
            "status": status,
            "reason": [str(v) for v in batch["reason"]],
            "shard": [""] * n,
            "row": [-1] * n,
            "checksum": [""] * n,
        }
        todo = [i for i in range(n) if status[i] == "embed"]
        if todo:
            record = self._shard(
                [ids[i] for i in todo],
                [out["path"][i] for i in todo],
                [hashes[i] for i in todo],
                [batch["pixels"][i] for i in todo],
                [int(batch["size"][i]) for i in todo],
            )
            for i, row in zip(todo, record.rows, strict=True):
                out["shard"][i], out["row"][i], out["checksum"][i] = row.shard, row.row, row.checksum
                out["status"][i] = "embedded"
        return {k: np.array(v, dtype=np.int64 if k == "row" else object) for k, v in out.items()}

    def _shard(self, ids: list[str], paths: list[str], hashes: list[str], pixels: list[bytes], sizes: list[int]) -> Any:
        import torch

        from ..gallery.writer import existing_shard, write_named_shard

        done = existing_shard(self.store, ids, hashes)  # a retried batch whose first attempt wrote the shard
        if done is not None:
            return done
        px = torch.stack(
            [
                torch.from_numpy(np.frombuffer(b, dtype=np.float32).copy()).reshape(3, s, s)
                for b, s in zip(pixels, sizes, strict=True)
            ]
        )
        feats, pooled = self.mapper(px, ids)
        return write_named_shard(self.store, ids, paths, hashes, feats, pooled)
