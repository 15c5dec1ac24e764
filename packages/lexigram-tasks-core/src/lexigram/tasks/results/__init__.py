"""Job result stores: the `ResultStore` base, in-memory and cache-backed versions."""

from __future__ import annotations

from lexigram.tasks.results._base import ResultStore
from lexigram.tasks.results._cache import CacheBackendResultStore
from lexigram.tasks.results._memory import InMemoryResultStore

__all__ = ["CacheBackendResultStore", "InMemoryResultStore", "ResultStore"]
