"""What produced a result: package version, git commit, time."""

from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path

from .._version import __version__


def git_commit() -> str | None:
    """The commit of the source tree the package runs from, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def provenance() -> dict[str, object]:
    return {"package_version": __version__, "git_commit": git_commit()}
