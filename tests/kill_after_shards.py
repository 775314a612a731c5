"""Test-side fault injection: run ``diffsim ARGS...`` and SIGKILL this process right after its N-th shard.

Usage: ``python tests/kill_after_shards.py N index build ...``. The library has no test hook: this wrapper
patches :meth:`GalleryStore.write_shard` before handing the arguments to the real CLI.
"""

from __future__ import annotations

import os
import signal
import sys

from diffsim.cli.main import main
from diffsim.gallery.store import GalleryStore

_written = 0
_write_shard = GalleryStore.write_shard


def _write_then_die(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - a wrapper of anything
    global _written
    record = _write_shard(self, *args, **kwargs)
    _written += 1
    if _written >= int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)  # as a kill -9 would: no cleanup, no commit
    return record


if __name__ == "__main__":
    GalleryStore.write_shard = _write_then_die  # type: ignore[method-assign]
    sys.exit(main(sys.argv[2:]))
