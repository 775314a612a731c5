"""The identity of the weights a backbone loaded: what feature cache keys name instead of the model string.

* a Hub id: ``hub:<repo id>@<commit hash>``, the commit the Hugging Face cache resolved the revision to
  (read from ``refs/<revision>`` of the cache folder; a 40-hex revision is its own commit);
* a local folder or single file: ``local:<absolute resolved path>#<digest>``, the digest of every file's
  (relative path, size, mtime_ns) below it, so replaced or edited weights (or configs) give a new
  identity. With ``content=True`` (or ``DIFFSIM_HASH_WEIGHTS=1``) the digest also covers file contents
  (slow for multi-GB checkpoints, immune to a copy that keeps size and mtime).

Two different models reached through the same ``--model`` text (a relative folder from two working
directories, a folder whose weights were replaced) therefore never share cache entries.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

HASH_ENV = "DIFFSIM_HASH_WEIGHTS"
_COMMIT = re.compile(r"[0-9a-f]{40}")


def _want_content(content: bool | None) -> bool:
    if content is not None:
        return content
    return os.environ.get(HASH_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # .cache/, .git/ ...
        out += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return out


def files_digest(path: str | os.PathLike, content: bool | None = None) -> str:
    """Digest of (relative path, size, mtime_ns) of every file at ``path`` (a file or a folder, recursive)."""
    root = Path(path).resolve()
    h = hashlib.blake2b(digest_size=12)
    hash_content = _want_content(content)
    for f in _files(root):
        st = f.stat()
        rel = f.name if root.is_file() else f.relative_to(root).as_posix()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        if hash_content:
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def local_identity(path: str | os.PathLike, content: bool | None = None) -> str:
    """``local:<resolved path>#<digest>`` for a local folder or file."""
    p = Path(path).expanduser().resolve()
    kind = "content" if _want_content(content) else "stat"
    return f"local:{p}#{kind}:{files_digest(p, content)}"


def hub_commit(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> str | None:
    """The commit hash the local Hugging Face cache holds for ``repo_id`` at ``revision`` (None: not cached)."""
    from huggingface_hub import constants

    rev = revision or "main"
    folder = Path(cache_dir or constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    if _COMMIT.fullmatch(rev):
        return rev
    ref = folder / "refs" / rev
    try:
        commit = ref.read_text().strip()
    except OSError:
        return None
    return commit if _COMMIT.fullmatch(commit) else None


def hub_identity(repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> str:
    """``hub:<repo id>@<commit>``; ``@<revision>?`` when the cache does not know the commit (not yet downloaded)."""
    commit = hub_commit(repo_id, revision, cache_dir)
    return f"hub:{repo_id}@{commit}" if commit else f"hub:{repo_id}@{revision or 'main'}?"


def model_identity(model: str | os.PathLike, revision: str | None = None, content: bool | None = None) -> str:
    """The identity of ``model``: a local path (folder or file) if it exists, else a Hub id."""
    p = Path(str(model)).expanduser()
    if p.exists():
        return local_identity(p, content)
    return hub_identity(str(model), revision)
