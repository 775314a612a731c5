"""A safetensors shard written one image at a time: memory holds one image, whatever the shard size.

Each tensor key gets a spill file (hidden, ``.HOST.PID.*.tmp`` in the shard folder, so a dead writer's
files are cleaned by :meth:`GalleryStore.recover`) to which every added image's bytes are appended.
:meth:`ShardFile.finish` writes the safetensors header (shapes ``(n, *image shape)``, offsets) and then
streams the spill files into the final temporary file, hashing (SHA-256) what it writes. The result is
an ordinary safetensors file that ``safe_open`` memory-maps and slices.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import IO

import torch

#: safetensors dtype names
DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_COPY = 1 << 22


def temp_prefix() -> str:
    """Prefix of this process's temporary files in a shard folder (what the stale-file cleaner parses)."""
    return f".{socket.gethostname()}.{os.getpid()}."


class ShardFile:
    """Appends images' tensors to per-key spill files; :meth:`finish` assembles one safetensors file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self._spill: dict[str, tuple[IO[bytes], str, torch.dtype, tuple[int, ...]]] = {}

    def add(self, tensors: dict[str, torch.Tensor]) -> None:
        """Append images: ``tensors`` (same keys every time) have the images along their first dimension."""
        if self._spill and set(tensors) != set(self._spill):
            raise ValueError(f"shard image keys changed: {sorted(tensors)} != {sorted(self._spill)}")
        counts = {int(v.shape[0]) for v in tensors.values()}
        if len(counts) != 1:
            raise ValueError(f"shard tensors disagree on the number of images: {sorted(counts)}")
        for k, v in tensors.items():
            v = v.detach().cpu().contiguous()
            if k not in self._spill:
                fd, path = tempfile.mkstemp(dir=self.folder, prefix=temp_prefix(), suffix=".tmp")
                self._spill[k] = (os.fdopen(fd, "w+b"), path, v.dtype, tuple(v.shape[1:]))
            fh, _, dtype, shape = self._spill[k]
            if v.dtype != dtype or tuple(v.shape[1:]) != shape:
                raise ValueError(f"shard tensor {k!r} changed from {dtype} {shape} to {v.dtype} {tuple(v.shape[1:])}")
            if v.numel():
                fh.write(v.reshape(-1).view(torch.uint8).numpy().data)
        self.count += counts.pop()

    def finish(self, metadata: dict[str, str]) -> tuple[str, str, int]:
        """Write the shard to a new temporary file; returns (its path, SHA-256, bytes). Spill files are removed."""
        keys = sorted(self._spill, key=lambda k: (-torch.empty((), dtype=self._spill[k][2]).element_size(), k))
        header: dict[str, object] = {"__metadata__": metadata}
        offset = 0
        for k in keys:
            fh, _, dtype, shape = self._spill[k]
            size = fh.tell()
            header[k] = {"dtype": DTYPES[dtype], "shape": [self.count, *shape], "data_offsets": [offset, offset + size]}
            offset += size
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)
        fd, out = tempfile.mkstemp(dir=self.folder, prefix=temp_prefix(), suffix=".tmp")
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as dst:
                for block in (len(head).to_bytes(8, "little"), head):
                    dst.write(block)
                    h.update(block)
                for k in keys:
                    fh = self._spill[k][0]
                    fh.seek(0)
                    while block := fh.read(_COPY):
                        dst.write(block)
                        h.update(block)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException:
            os.unlink(out)
            raise
        finally:
            self.discard()
        return out, h.hexdigest(), 8 + len(head) + offset

    def discard(self) -> None:
        """Close and delete the spill files."""
        for fh, path, _, _ in self._spill.values():
            fh.close()
            Path(path).unlink(missing_ok=True)
        self._spill = {}
