"""Feature cache: per image and config, in memory (LRU, bounded in bytes) and optionally on disk.

Keys are ``(config_key, image_key)``: the hash of the metric's full config and the hash of the
preprocessed pixels. On disk each entry is ``DIR/<config_key>/<image_key>.safetensors``; an entry
that cannot be read is reported with a warning, recomputed and rewritten.

A disk folder that cannot be created or written raises :class:`~diffsim.errors.CacheError` when the
cache is built (before any work). If writing fails later (disk full, folder removed), the cache warns
once and goes on in memory: computed features, hence scores, are never lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from safetensors import SafetensorError

from .errors import CacheError
from .features import Features

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_BYTES = 2 * 1024**3


def config_key(config: Mapping[str, object]) -> str:
    """Stable short hash of a JSON-able config mapping."""
    blob = json.dumps(dict(config), sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=10).hexdigest()


def check_cache_dir(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and prove it writable; raise :class:`CacheError` saying why not."""
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CacheError(
            f"feature cache folder {path} cannot be used: {reason}",
            hint="pass a writable cache_dir=..., or cache_dir=None for no disk cache",
            cli_hint="pass a writable --cache DIR, or leave --cache out",
        ) from exc
    return path


class FeatureCache:
    """Memory LRU (at most ``max_bytes``) in front of an optional safetensors directory."""

    def __init__(self, max_bytes: int = DEFAULT_MEMORY_BYTES, directory: str | os.PathLike | None = None) -> None:
        self.max_bytes = int(max_bytes)
        self.directory = check_cache_dir(directory) if directory is not None else None
        self.write_failed = False  # set after a failed disk write: later entries stay in memory only
        self._mem: OrderedDict[tuple[str, str], Features] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._mem)

    def clear(self) -> None:
        """Empty the memory cache (the disk cache is left alone)."""
        self._mem.clear()
        self._bytes = 0

    def _path(self, key: tuple[str, str]) -> Path:
        assert self.directory is not None
        return self.directory / key[0] / f"{key[1]}.safetensors"

    def get(self, key: tuple[str, str]) -> Features | None:
        """The cached one-image features, or None."""
        feats = self._mem.get(key)
        if feats is not None:
            self._mem.move_to_end(key)
            self.hits += 1
            return feats
        if self.directory is not None:
            path = self._path(key)
            if path.exists():
                try:
                    feats = Features.load(path)
                except Exception as exc:  # any corruption: recompute
                    logger.warning("ignoring corrupt cache entry %s (%s); it will be recomputed", path, exc)
                else:
                    self.hits += 1
                    self._remember(key, feats)
                    return feats
        self.misses += 1
        return None

    def put(self, key: tuple[str, str], feats: Features) -> None:
        """Store one image's features in memory and, if configured, on disk (atomically)."""
        self._remember(key, feats)
        if self.directory is None or self.write_failed:
            return
        path = self._path(key)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            feats.save(tmp)
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)  # mkstemp's 0600 would lock other users out of a shared cache
            os.replace(tmp, path)
        except (OSError, SafetensorError) as exc:  # safetensors reports I/O failures as its own error
            self.write_failed = True
            logger.warning(
                "cannot write the feature cache in %s (%s); going on without writing to disk (scores are not affected)",
                self.directory,
                exc,
            )
        finally:
            if tmp is not None and os.path.exists(tmp):
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _remember(self, key: tuple[str, str], feats: Features) -> None:
        if self.max_bytes <= 0 or feats.nbytes > self.max_bytes:
            return
        old = self._mem.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._mem[key] = feats
        self._bytes += feats.nbytes
        while self._bytes > self.max_bytes and self._mem:
            _, dropped = self._mem.popitem(last=False)
            self._bytes -= dropped.nbytes
