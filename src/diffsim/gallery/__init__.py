"""Galleries: sources, an on-disk feature store, streaming builds, retrieval and near-duplicates."""

from .sources import Source, Sources, collect
from .store import GalleryStore, Row, ShardRecord, file_hash

__all__ = ["GalleryStore", "Row", "ShardRecord", "Source", "Sources", "collect", "file_hash"]
