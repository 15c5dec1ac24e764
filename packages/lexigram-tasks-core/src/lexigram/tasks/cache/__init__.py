"""Cache backends: `InMemoryCacheBackend` implements the contracts' `CacheBackendProtocol`."""

from __future__ import annotations

from lexigram.tasks.cache._memory import InMemoryCacheBackend

__all__ = ["InMemoryCacheBackend"]
