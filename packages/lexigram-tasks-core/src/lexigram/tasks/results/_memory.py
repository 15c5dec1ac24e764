"""`InMemoryResultStore`: results in a bounded, TTL-expiring dict; `wait` is woken by `store`."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from itertools import islice

from lexigram.contracts.tasks import JobResult, TaskConfigurationError
from lexigram.tasks.results._base import ResultStore


class InMemoryResultStore(ResultStore):
    """In-memory result store with TTL-based expiry and a capacity bound.

    Entries are kept in store order, which is also expiry order (one TTL for all), so
    expiring and evicting both pop from the front in O(1). A `wait` registers a future
    that `store` resolves: waiters wake the moment the result lands, never by polling.
    Suitable for development and single-process deployments.

    Args:
        ttl: Seconds a result is kept (0 keeps it until evicted for capacity).
        max_size: Most results kept; storing beyond it evicts the oldest.

    Example:
        store = InMemoryResultStore(ttl=600)
        await store.store(job.id, JobResult.ok(42))
        result = await store.wait(job.id, timeout=5)
    """

    def __init__(self, *, ttl: int = 3600, max_size: int = 10000) -> None:
        if ttl < 0 or max_size < 1:
            msg = (
                f"InMemoryResultStore got ttl={ttl!r}, max_size={max_size!r}. Use ttl >= 0 "
                "seconds (0 = no expiry) and max_size >= 1."
            )
            raise TaskConfigurationError(msg)
        self._ttl = ttl
        self._max_size = max_size
        # job id -> (result, monotonic expiry)
        self._entries: OrderedDict[str, tuple[JobResult, float]] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[JobResult]]] = {}
        self._total_stored = 0
        self._next_expiry = float("inf") if not ttl else 0.0

    def __repr__(self) -> str:
        return f"InMemoryResultStore(stored={len(self._entries)}, max_size={self._max_size})"

    async def store(self, job_id: str, result: JobResult) -> None:
        """Persist a job result, evicting the oldest entry when at capacity."""
        entries = self._entries
        now = time.monotonic()
        if job_id in entries:
            del entries[job_id]
        entries[job_id] = (result, now + self._ttl if self._ttl else float("inf"))
        self._total_stored += 1
        if len(entries) > self._max_size:
            entries.popitem(last=False)
        if now >= self._next_expiry:  # nothing can have expired before the oldest entry
            self._expire(now)
        waiters = self._waiters.pop(job_id, None)
        if waiters is not None:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(result)

    async def get(self, job_id: str) -> JobResult | None:
        """Return the result for the job id, or None if absent or expired."""
        entry = self._entries.get(job_id)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._entries[job_id]
            return None
        return entry[0]

    async def find_job_ids(self, prefix: str, limit: int) -> list[str]:
        """Return up to `limit` ids with a live result starting with `prefix`.

        Implements `JobLookupProtocol`; the scan is bounded by `max_size`.
        """
        now = time.monotonic()
        found = (
            job_id
            for job_id, (_, expires_at) in self._entries.items()
            if expires_at > now and job_id.startswith(prefix)
        )
        return list(islice(found, limit))

    async def delete(self, job_id: str) -> bool:
        """Remove the result for the job id and return True if it existed."""
        return self._entries.pop(job_id, None) is not None

    async def wait(
        self, job_id: str, *, timeout: float = 30.0, poll_interval: float = 0.5
    ) -> JobResult | None:
        """Wait for a result to appear, up to `timeout` seconds.

        `store` wakes the waiter directly; `poll_interval` is accepted for API
        compatibility and unused.

        Returns:
            The result, or None on timeout.
        """
        del poll_interval  # woken by store(), never polled
        result = await self.get(job_id)
        if result is not None:
            return result
        waiter: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(waiter)
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            return None
        finally:
            self._drop_waiter(job_id, waiter)

    async def cleanup_expired(self) -> int:
        """Remove all entries whose TTL has elapsed and return the count removed."""
        return self._expire(time.monotonic())

    async def get_completed(self, limit: int | None = None) -> list[JobResult]:
        """Return live successful results, newest first."""
        return self._select(success=True, limit=limit)

    async def get_failed(self, limit: int | None = None) -> list[JobResult]:
        """Return live failed results, newest first."""
        return self._select(success=False, limit=limit)

    def get_stats(self) -> dict[str, int]:
        """Return store statistics: size, capacity, waiter count, total stored and TTL."""
        return {
            "stored": len(self._entries),
            "max_size": self._max_size,
            "pending_waiters": sum(len(w) for w in self._waiters.values()),
            "total_stored": self._total_stored,
            "ttl": self._ttl,
        }

    def _expire(self, now: float) -> int:
        entries = self._entries
        removed = 0
        self._next_expiry = float("inf") if not self._ttl else now + self._ttl
        while entries:
            job_id, (_, expires) = next(iter(entries.items()))
            if expires > now:
                self._next_expiry = expires
                break
            del entries[job_id]
            removed += 1
        return removed

    def _select(self, *, success: bool, limit: int | None) -> list[JobResult]:
        now = time.monotonic()
        matching = (
            result
            for result, expires in reversed(self._entries.values())
            if result.success is success and expires > now
        )
        return list(matching if limit is None else islice(matching, limit))

    def _drop_waiter(self, job_id: str, waiter: asyncio.Future[JobResult]) -> None:
        waiters = self._waiters.get(job_id)
        if waiters is None:
            return
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            del self._waiters[job_id]
