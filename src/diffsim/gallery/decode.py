"""The one decoder of a gallery build, whatever the engine: bytes -> content hash -> skip, or pixels.

:func:`decode_record` reads a record's bytes (the file, for image-file galleries), hashes them (BLAKE2b-128,
as :func:`~diffsim.gallery.store.file_hash`), skips an image the store holds with that hash, and decodes
the others with :func:`diffsim.images.decode_picture` (the decoder of ``diffsim score``: EXIF transpose,
16-bit and float images without 8-bit rounding, the pixel limit before decoding, unsupported modes
refused) then the metric's ``preprocess``. A failure is a status with a one-line reason, never an exception.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import DiffSimError
from ..images import decode_picture
from .readers import Record

EMBED, SKIP, FAIL = "embed", "skip", "fail"


@dataclass
class Decoded:
    """A record after decoding: ``status`` embed (``pixels`` set), skip (stored with this hash) or fail."""

    id: str
    path: str
    hash: str
    status: str
    reason: str = ""
    pixels: torch.Tensor | None = None


def missing_reason(path: str) -> str:
    """Why a listed gallery file cannot be opened: a broken symbolic link, or a file that vanished."""
    if os.path.islink(path):
        return f"broken symbolic link (it points to {os.readlink(path)}, which does not exist)"
    return "the file vanished during the build (deleted or moved after the gallery was listed)"


def read_bytes(record: Record) -> bytes:
    """The encoded image: the record's bytes, or the file's. Raises :class:`OSError` with a clear strerror."""
    if record.data is not None:
        return record.data
    try:
        with open(record.path, "rb") as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise FileNotFoundError(exc.errno, missing_reason(record.path), record.path) from None


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def decode_record(
    record: Record,
    preprocess: Callable[[Any, int], torch.Tensor],
    known: Mapping[str, str],
    max_pixels: int | None = None,
) -> Decoded:
    """Hash, then skip (``known[id] == hash``) or decode and preprocess one record; never raises on bad input."""
    try:
        data = read_bytes(record)
    except OSError as exc:
        return Decoded(record.id, record.path, "", FAIL, f"cannot read {record.path}: {exc.strerror or exc}")
    digest = content_hash(data)
    if known.get(record.id) == digest:
        return Decoded(record.id, record.path, digest, SKIP)
    try:
        picture = decode_picture(data, record.path, max_pixels)
        pixels = preprocess(picture, 0).detach().cpu().float().contiguous()
    except (DiffSimError, OSError, ValueError) as exc:
        return Decoded(record.id, record.path, digest, FAIL, str(exc))
    return Decoded(record.id, record.path, digest, EMBED, pixels=pixels)
