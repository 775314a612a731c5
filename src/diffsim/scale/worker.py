"""What runs on the Ray cluster: decoding on CPU tasks, embedding on an actor pool that writes shards.

Rows flow as ``{"id", "path", "bytes"}`` (encoded image) -> :func:`decode_batch` ->
``{"id", "path", "hash", "status", "reason", "size", "pixels"}`` (``status``: ``embed``, ``skip`` for an
image already stored with the same content, ``fail`` for an unreadable one) -> :class:`EmbedWorker` ->
``{"id", "path", "hash", "status", "reason", "shard", "row", "checksum", "pool"}``. Only these small
columns come back to the driver: the features go straight from the actor into a shard file.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: test hook: the first embedding actor to take a batch exits (as if killed) right after writing its shard
EXIT_ONCE_ENV = "DIFFSIM_RAY_EXIT_ONCE"


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


def decode_batch(batch: dict[str, np.ndarray], preprocess: Any, known: Any = None) -> dict[str, np.ndarray]:
    """Hash the encoded bytes, skip images stored with that hash, decode and preprocess the others.

    ``known``: the store's ``{id: hash}``, or a Ray object reference to it.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from ..errors import DiffSimError

    known = _known(known)
    n = len(batch["id"])
    out: dict[str, list[Any]] = {k: [] for k in ("id", "path", "hash", "status", "reason", "size", "pixels")}
    for i in range(n):
        image_id, path, data = str(batch["id"][i]), str(batch["path"][i]), batch["bytes"][i]
        data = bytes(data) if data is not None else b""
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        status, reason, size, pixels = "embed", "", 0, b""
        if known.get(image_id) == digest:
            status = "skip"
        elif not data:
            status, reason = "fail", f"cannot read image {path}: no bytes"
        else:
            try:
                with Image.open(io.BytesIO(data)) as opened:
                    im = ImageOps.exif_transpose(opened)
                    im.load()
                    rgb = im.convert("RGB")
                x = preprocess(rgb, i).detach().cpu().contiguous().float().numpy()
                size, pixels = int(x.shape[-1]), x.tobytes()
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError, DiffSimError) as exc:
                status, reason = "fail", f"cannot read image {path}: {exc} (is the file truncated or not an image?)"
        for k, v in zip(out, (image_id, path, digest, status, reason, size, pixels), strict=False):
            out[k].append(v)
    return {k: np.array(v, dtype=np.int64 if k == "size" else object) for k, v in out.items()}


def shard_name(ids: list[str], hashes: list[str]) -> str:
    """A name fixed by the batch's content: a retried batch finds the shard its first attempt wrote."""
    h = hashlib.blake2b(digest_size=12)
    for i, d in zip(ids, hashes, strict=False):
        h.update(i.encode("utf-8") + b"\0" + d.encode() + b"\n")
    return "ray-" + h.hexdigest()


class EmbedWorker:
    """One Ray actor: loads the store's metric once, then embeds batches and writes one shard per batch."""

    def __init__(
        self,
        store_dir: str,
        metric_name: str,
        settings: dict[str, Any],
        runtime: dict[str, Any],
        exit_once: str | None = None,
    ) -> None:
        from ..gallery.build import _stream_metric
        from ..gallery.store import GalleryStore
        from ..registry import create_metric

        self.store = GalleryStore.open(store_dir)
        metric = create_metric(metric_name, **{**settings, **runtime})
        self.store.check_metric(metric)
        self.metric = _stream_metric(metric, runtime.get("batch_size"))
        self.exit_once = exit_once

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

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
            "pool": [b""] * n,
        }
        todo = [i for i in range(n) if status[i] == "embed"]
        if todo:
            record = self._shard(
                [ids[i] for i in todo],
                [out["path"][i] for i in todo],
                [hashes[i] for i in todo],
                [batch["pixels"][i] for i in todo],
                [int(batch["size"][i]) for i in todo],
                torch,
            )
            for i, row in zip(todo, record.rows, strict=False):
                out["shard"][i], out["row"][i], out["checksum"][i] = row.shard, row.row, row.checksum
                out["pool"][i] = np.asarray(row.pool, dtype=np.float32).tobytes()
                out["status"][i] = "embedded"
            self._maybe_exit()
        return {k: np.array(v, dtype=np.int64 if k == "row" else object) for k, v in out.items()}

    def _shard(
        self, ids: list[str], paths: list[str], hashes: list[str], pixels: list[bytes], sizes: list[int], torch: Any
    ) -> Any:
        name = shard_name(ids, hashes)
        if self.store.shard_path(name).exists():  # a retried batch whose first attempt wrote the shard
            record = self.store.read_record(name)
            if [r.id for r in record.rows] == ids and [r.hash for r in record.rows] == hashes:
                logger.info("%s already written (a retried batch): not embedded again", name)
                return record
        px = torch.stack(
            [
                torch.from_numpy(np.frombuffer(b, dtype=np.float32).copy()).reshape(3, s, s)
                for b, s in zip(pixels, sizes, strict=False)
            ]
        )
        m = self.metric
        feats = m.embed_pixels(px.to(m.device), ids).to("cpu")
        pooled = m.pool(feats).cpu()
        try:
            return self.store.write_shard(ids, paths, hashes, feats, pooled, name=name)
        except FileExistsError:  # another attempt of the same batch finished first
            return self.store.read_record(name)

    def _maybe_exit(self) -> None:
        marker = self.exit_once
        if not marker:
            return
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # exactly one actor, once
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        logger.warning("%s: exiting this actor after writing its first shard", EXIT_ONCE_ENV)
        os._exit(1)
