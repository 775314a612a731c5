"""Embed each distinct image once and keep its features until their last use.

The whole evaluation order is known in advance, so features are kept exactly as long as a later
chunk needs them; above ``max_bytes`` the ones needed furthest in the future are dropped first
(re-embedding them later is counted, and is a cache hit for a metric with a disk cache).
Missing or unreadable images are recorded, not fatal (unless ``strict``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import ImageError
from ..features import Features

logger = logging.getLogger(__name__)

Key = tuple[str, "str | None"]  # (absolute image path, prompt)
EmbedFn = Callable[[list[str], "str | None"], Features]


class FeatureStore:
    """Features of (image, prompt) keys, embedded in batches on demand."""

    def __init__(
        self,
        embed: EmbedFn,
        batch_size: int = 16,
        strict: bool = False,
        max_bytes: int = 8 * 1024**3,
        progress: bool = False,
        desc: str = "images",
    ) -> None:
        self._embed = embed
        self.progress = progress  # a second bar, per image embedded (the caller's bar counts triplets)
        self.desc = desc
        self._bar: tqdm | None = None
        self.batch_size = batch_size
        self.strict = strict
        self.max_bytes = max_bytes
        self._feats: dict[Key, Features] = {}
        self.errors: dict[str, str] = {}  # path -> message
        self.embedded: set[Key] = set()
        self.n_reembedded = 0
        self._uses: dict[Key, list[int]] = {}

    # ------------------------------------------------------------ planning
    def plan(self, chunks: Sequence[Sequence[Key]]) -> None:
        """Tell the store which keys each chunk will need (enables exact eviction)."""
        self._uses = {}
        for i, keys in enumerate(chunks):
            for k in dict.fromkeys(keys):
                self._uses.setdefault(k, []).append(i)

    def _next_use(self, key: Key, after: int) -> float:
        for i in self._uses.get(key, ()):
            if i > after:
                return i
        return float("inf")

    def release(self, done_chunk: int) -> None:
        """Drop features no later chunk needs, then the furthest-needed ones while above ``max_bytes``."""
        for k in [k for k in self._feats if self._next_use(k, done_chunk) == float("inf")]:
            del self._feats[k]
        total = sum(f.nbytes for f in self._feats.values())
        if total <= self.max_bytes:
            return
        for k in sorted(self._feats, key=lambda k: -self._next_use(k, done_chunk)):
            total -= self._feats.pop(k).nbytes
            if total <= self.max_bytes:
                break

    # ----------------------------------------------------------- embedding
    def ensure(self, keys: Sequence[Key]) -> None:
        """Embed every key not held yet (grouped by prompt, in batches)."""
        todo = [k for k in dict.fromkeys(keys) if k not in self._feats and k[0] not in self.errors]
        missing = [k for k in todo if not Path(k[0]).is_file()]
        for k in missing:
            self._fail(k[0], f"image file not found: {k[0]}")
        todo = [k for k in todo if k[0] not in self.errors]
        bar = self._progress_bar()
        if bar is not None:
            bar.update(len(missing))
        by_prompt: dict[str | None, list[Key]] = {}
        for k in todo:
            by_prompt.setdefault(k[1], []).append(k)
        for prompt, ks in by_prompt.items():
            for i in range(0, len(ks), self.batch_size):
                self._embed_batch(ks[i : i + self.batch_size], prompt)
                if bar is not None:
                    bar.update(len(ks[i : i + self.batch_size]))
        if bar is not None and bar.n >= (bar.total or 0):
            self.close()

    def _progress_bar(self) -> tqdm | None:
        if not self.progress:
            return None
        if self._bar is None:
            self._bar = tqdm(
                total=len(self._uses) or None, desc=self.desc, unit="image", position=1, leave=False, dynamic_ncols=True
            )
        return self._bar

    def close(self) -> None:
        """Close the per-image progress bar (if any)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _embed_batch(self, keys: list[Key], prompt: str | None) -> None:
        try:
            feats = self._embed([k[0] for k in keys], prompt)
        except ImageError as exc:
            if len(keys) == 1:
                self._fail(keys[0][0], str(exc))
                return
            for k in keys:  # find the culprit(s); the good images still get embedded
                self._embed_batch([k], prompt)
            return
        for i, k in enumerate(keys):
            if k in self.embedded:
                self.n_reembedded += 1
            self.embedded.add(k)
            self._feats[k] = feats[i]

    def _fail(self, path: str, message: str) -> None:
        if self.strict:
            raise ImageError(message)
        logger.warning("skipping unreadable image: %s", message)
        self.errors[path] = message

    def get(self, key: Key) -> Features | None:
        return self._feats.get(key)

    def clear(self) -> None:
        """Drop every held feature (errors and counts are kept)."""
        self._feats.clear()
