"""Progress stores: the `ProgressStore` base, in-memory and cache-backed versions."""

from __future__ import annotations

import dataclasses
import json
import logging
from abc import ABC, abstractmethod

from lexigram.contracts.tasks import CacheBackendProtocol, ProgressInfo, json_for_storage

logger = logging.getLogger(__name__)

_DEFAULT_PREFIX = "lexigram:tasks:progress:"


class ProgressStore(ABC):
    """Abstract storage for progress state (implements `ProgressStoreProtocol`)."""

    @abstractmethod
    async def save(self, info: ProgressInfo) -> None:
        """Save progress state."""

    @abstractmethod
    async def get(self, job_id: str) -> ProgressInfo | None:
        """Get progress for a job, or None."""

    @abstractmethod
    async def delete(self, job_id: str) -> None:
        """Remove a progress entry."""

    @abstractmethod
    async def list_active(self) -> list[ProgressInfo]:
        """List all active (incomplete, not failed) progress entries."""


class InMemoryProgressStore(ProgressStore):
    """In-memory progress store for development and testing.

    Example:
        store = InMemoryProgressStore()
        tracker = ProgressTracker("job-1", store)
        await tracker.update(5, 10)
    """

    def __init__(self) -> None:
        self._entries: dict[str, ProgressInfo] = {}

    def __repr__(self) -> str:
        return f"InMemoryProgressStore(entries={len(self._entries)})"

    async def save(self, info: ProgressInfo) -> None:
        """Persist a `ProgressInfo` entry in the in-memory store (a copy of it)."""
        # Copies in and out, as a store that serializes them makes: the tracker keeps
        # changing its own object, and a reader's snapshot must not change after the read.
        self._entries[info.job_id] = _copy(info)

    async def get(self, job_id: str) -> ProgressInfo | None:
        """Return the `ProgressInfo` for the job id, or None if not found."""
        info = self._entries.get(job_id)
        return None if info is None else _copy(info)

    async def delete(self, job_id: str) -> None:
        """Remove the progress entry for the job id if it exists."""
        self._entries.pop(job_id, None)

    async def list_active(self) -> list[ProgressInfo]:
        """Return all progress entries whose job has not completed or failed."""
        return [_copy(info) for info in self._entries.values() if info.is_active]


def _copy(info: ProgressInfo) -> ProgressInfo:
    return dataclasses.replace(info, metadata=dict(info.metadata))


class CacheBackendProgressStore(ProgressStore):
    """Distributed progress store backed by a `CacheBackendProtocol`.

    Stores each `ProgressInfo` as JSON under ``<key_prefix><job_id>`` so progress is
    visible to all worker processes sharing the cache. TTL-based expiry is delegated to
    the backend. `list_active` scans the key prefix, which is fine for thousands of
    entries; a backend with millions should offer its own store.

    Args:
        cache: Cache backend (Redis, in-memory, ...).
        ttl: Seconds before a progress entry expires.
        key_prefix: Prefix of every key this store writes.
    """

    def __init__(
        self, cache: CacheBackendProtocol, *, ttl: int = 3600, key_prefix: str = _DEFAULT_PREFIX
    ) -> None:
        self._cache = cache
        self._ttl = ttl
        self._prefix = key_prefix

    def __repr__(self) -> str:
        return f"CacheBackendProgressStore(cache={self._cache!r}, ttl={self._ttl})"

    async def save(self, info: ProgressInfo) -> None:
        """Persist a `ProgressInfo` entry to the cache backend."""
        payload = json_for_storage(info.to_dict(), what="progress of job", of=info.job_id)
        await self._cache.set(self._prefix + info.job_id, payload, ttl=self._ttl or None)

    async def get(self, job_id: str) -> ProgressInfo | None:
        """Return the `ProgressInfo` for the job id, or None if not found."""
        raw = await self._cache.get(self._prefix + job_id)
        if raw is None:
            return None
        try:
            return ProgressInfo.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            logger.warning("Ignoring an unreadable progress entry for job %s.", job_id)
            return None

    async def delete(self, job_id: str) -> None:
        """Remove the progress entry for the job id."""
        await self._cache.delete(self._prefix + job_id)

    async def list_active(self) -> list[ProgressInfo]:
        """Return all active (incomplete, not failed) progress entries."""
        found: list[ProgressInfo] = []
        for key in await self._cache.keys(self._prefix):
            info = await self.get(key[len(self._prefix) :])
            if info is not None and info.is_active:
                found.append(info)
        return found
