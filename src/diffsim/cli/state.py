"""The running command's state (verbosity, command name), set by the CLI group, read by error handling."""

from __future__ import annotations

STATE: dict[str, object] = {"verbose": 0, "command": None}
