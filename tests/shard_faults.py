"""Test-side fault injection: run ``diffsim ARGS...`` with a fault after each shard file it writes.

Usage: ``python tests/shard_faults.py MODE N index build ...`` with MODE

* ``kill``: SIGKILL this process right after its N-th shard (no cleanup, no commit: a kill -9);
* ``interrupt``: SIGINT (Ctrl-C) right after its N-th shard;
* ``hold``: after its first shard, wait until the file N exists (at most 240 s): keeps a build running until the
  test, having seen another build start and wait, releases it.

The library has no test hook: this wrapper patches :meth:`GalleryStore.finish_shard` before handing the
arguments to the real CLI (every shard, written whole or image by image, ends in ``finish_shard``).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from diffsim.cli.main import main
from diffsim.gallery.store import GalleryStore

_written = 0
_finish_shard = GalleryStore.finish_shard


def _write_with_fault(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - a wrapper of anything
    global _written
    record = _finish_shard(self, *args, **kwargs)
    _written += 1
    mode, arg = sys.argv[1], sys.argv[2]
    if mode == "hold":
        deadline = time.monotonic() + 240
        while _written == 1 and not os.path.exists(arg) and time.monotonic() < deadline:
            time.sleep(0.1)
    elif _written >= float(arg):
        os.kill(os.getpid(), signal.SIGKILL if mode == "kill" else signal.SIGINT)
        time.sleep(5)  # the signal arrives at once; never return to write more
    return record


if __name__ == "__main__":
    GalleryStore.finish_shard = _write_with_fault  # type: ignore[method-assign]
    sys.exit(main(sys.argv[3:]))
