"""An output folder that survives crashes: a header (``run.json``) and per-item records (JSON Lines).

Every record is flushed as soon as it is written, so an interrupted run loses at most the item being
computed; a torn last line is discarded when the run resumes. A folder that holds a different run
(other triplets or metric settings) is refused unless ``overwrite``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


class RunLog:
    """``out_dir/run.json`` + ``out_dir/<name>.jsonl``; resumable."""

    def __init__(
        self, out_dir: str | os.PathLike, fingerprint: dict[str, Any], name: str = "triplets", overwrite: bool = False
    ) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.header_path = self.dir / "run.json"
        self.path = self.dir / f"{name}.jsonl"
        fp = json.loads(_dumps(fingerprint))
        if overwrite:
            for p in (self.header_path, self.path, self.dir / "results.json"):
                p.unlink(missing_ok=True)
        if self.header_path.exists():
            old = json.loads(self.header_path.read_text()).get("fingerprint")
            if old != fp:
                diff = sorted(k for k in set(old or {}) | set(fp) if (old or {}).get(k) != fp.get(k))
                raise ConfigError(
                    f"{self.dir} holds another run (different {', '.join(diff) or 'settings'}); "
                    "use another --out, or --overwrite to start again"
                )
        else:
            self.header_path.write_text(json.dumps({"fingerprint": fp}, indent=1, default=str))
        self.records: dict[str, dict[str, Any]] = self._read()
        self.resumed = len(self.records)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  (kept open for streaming; closed by close())

    def _read(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return out
        raw = self.path.read_bytes()
        good = raw[: raw.rfind(b"\n") + 1]  # a crash mid-write leaves a partial last line: drop it
        if len(good) != len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(len(good))
        for line in good.decode("utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                out[str(rec["id"])] = rec  # the last record of an id wins (errors are retried)
        return out

    def done(self, item_id: str) -> bool:
        rec = self.records.get(item_id)
        return rec is not None and "error" not in rec

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, default=str) + "\n")
        self._fh.flush()
        self.records[str(record["id"])] = record

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
