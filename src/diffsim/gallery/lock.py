"""One build of a store at a time: an exclusive ``fcntl`` lock on ``STORE/.build.lock``.

A second build of the same store waits for the first (saying so once), then finds the images stored
and embeds only what is left: two builds never do all the work twice nor write competing shards. The
lock is released when the process exits, however it exits (a killed build leaves no stale lock).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_FILE = ".build.lock"
_HELD: dict[str, int] = {}  # lock path -> nesting depth in this process


@contextlib.contextmanager
def build_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold the store's build lock (re-entrant within a process); wait, with a warning, while another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; builds are not serialised
        yield
        return
    path = Path(folder) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            logger.warning(
                "another build of %s is running (pid %s): waiting for it to finish, then embedding only what it left",
                Path(folder),
                other,
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
