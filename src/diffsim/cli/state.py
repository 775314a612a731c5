"""What the running CLI command is (set by the group and by commands that can resume; read by ``main``)."""

from __future__ import annotations

_STATE: dict[str, object] = {"verbose": 0, "command": None}


def set_command(name: str) -> None:
    """Name the running command (e.g. "index build": an interrupt then says that a rerun resumes)."""
    _STATE["command"] = name
