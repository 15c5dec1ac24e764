"""`CacheBackendResultStore`: results as JSON in a `CacheBackendProtocol`, shared by processes."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from lexigram.contracts.tasks import CacheBackendProtocol, JobResult
from lexigram.tasks.results._base import ResultStore

logger = logging.getLogger(__name__)

_DEFAULT_PREFIX = "lexigram:tasks:result:"


class CacheBackendResultStore(ResultStore):
    """Distributed result store backed by a `CacheBackendProtocol` (Redis, in-memory, ...).

    Results are stored as JSON under ``<key_prefix><job_id>`` with the store's TTL, so
    they are visible to every process that shares the cache; expiry is the cache's job.
    A `wait` in this process is woken at once by this object's `store`; results written
    by other processes are seen by re-reading the cache every `poll_interval` seconds,
    because the cache contract has no change notification.

    Args:
        cache: The cache backend.
        ttl: Seconds before a result entry expires.
        poll_interval: Seconds between cache reads while waiting for another
            process's result.
        key_prefix: Prefix of every key this store writes.

    Example:
        store = CacheBackendResultStore(InMemoryCacheBackend(), ttl=600)
        await store.store("job-1", JobResult.ok({"rows": 3}))
    """

    def __init__(
        self,
        cache: CacheBackendProtocol,
        *,
        ttl: int = 3600,
        poll_interval: float = 0.5,
        key_prefix: str = _DEFAULT_PREFIX,
    ) -> None:
        self._cache = cache
        self._ttl = ttl
        self._poll_interval = poll_interval
        self._prefix = key_prefix
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def __repr__(self) -> str:
        return f"CacheBackendResultStore(cache={self._cache!r}, ttl={self._ttl})"

    async def store(self, job_id: str, result: JobResult) -> None:
        """Persist a job result in the cache backend with the store's TTL.

        The record is `JobResult.to_json`'s, as every backend's result store writes it: a
        value JSON cannot carry is kept as its ``repr`` (with a warning naming the job),
        never refused after the job ran.
        """
        payload = result.to_json(of=job_id)
        await self._cache.set(self._prefix + job_id, payload, ttl=self._ttl or None)
        for waiter in self._waiters.pop(job_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def get(self, job_id: str) -> JobResult | None:
        """Return the stored result, or None if absent or expired."""
        raw = await self._cache.get(self._prefix + job_id)
        if raw is None:
            return None
        try:
            return JobResult.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            logger.warning("Ignoring an unreadable result entry for job %s.", job_id)
            return None

    async def delete(self, job_id: str) -> bool:
        """Remove the result from the cache and return True if it existed."""
        return await self._cache.delete(self._prefix + job_id)

    async def wait(
        self, job_id: str, *, timeout: float = 30.0, poll_interval: float | None = None
    ) -> JobResult | None:
        """Wait until the result appears or `timeout` elapses.

        Args:
            job_id: The job's id.
            timeout: Longest wait in seconds.
            poll_interval: Seconds between cache reads (default: the store's).

        Returns:
            The result, or None on timeout.
        """
        interval = self._poll_interval if poll_interval is None else poll_interval
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while True:
            result = await self.get(job_id)
            if result is not None:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(job_id, set()).add(waiter)
            try:
                await asyncio.wait_for(waiter, min(interval, remaining))
            except TimeoutError:
                pass
            finally:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[job_id]

    async def cleanup_expired(self) -> int:
        """Return 0: the cache backend expires entries itself."""
        return 0

    async def get_completed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored successful results, newest first (scans the key prefix)."""
        return await self._select(success=True, limit=limit)

    async def get_failed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored failed results, newest first (scans the key prefix)."""
        return await self._select(success=False, limit=limit)

    async def _select(self, *, success: bool, limit: int | None) -> list[JobResult]:
        results: list[JobResult] = []
        for key in await self._cache.keys(self._prefix):
            result = await self.get(key[len(self._prefix) :])
            if result is not None and result.success is success:
                results.append(result)
        results.sort(key=lambda r: r.completed_at or r.failed_at or 0.0, reverse=True)
        return results if limit is None else results[:limit]
