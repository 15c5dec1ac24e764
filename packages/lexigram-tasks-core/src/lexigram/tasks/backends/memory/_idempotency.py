"""`IdempotencyKeys`: the idempotency keys a `MemoryTaskQueue` holds, and when they lapse.

A key is held from its job's enqueue until the queue's ``idempotency_ttl`` has passed,
and beyond that for as long as its job is still in the queue; while it is held, a job
enqueued with it is a duplicate of the first one. Every method takes the queue's clock
reading (``time.monotonic()`` of the queue's module), so one clock decides.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container


class IdempotencyKeys:
    """Held keys with the id of the job that holds each, expired lazily in TTL order.

    Attributes:
        ttl: Seconds a key stays held after its job was enqueued.
        keys: key -> (first job id, expiry).
        expiries: ``(expiry, key)`` in expiry order: every key gets the same TTL, so
            expiring keys is a popleft loop.
    """

    __slots__ = ("expiries", "keys", "ttl")

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.keys: dict[str, tuple[str, float]] = {}
        self.expiries: deque[tuple[float, str]] = deque()

    def hold(self, key: str, job_id: str, now: float) -> None:
        """Hold `key` for `job_id`, enqueued at `now`."""
        expiry = now + self.ttl
        self.keys[key] = (job_id, expiry)
        self.expiries.append((expiry, key))

    def held(self, key: str, jobs: Container[str], now: float) -> str | None:
        """Return the first job id if `key` is still held (its job is in `jobs` or TTL runs)."""
        expiry = self.expiries
        keys = self.keys
        while expiry and expiry[0][0] <= now:
            expires_at, old_key = expiry.popleft()
            entry = keys.get(old_key)
            # A key whose job is still queued stays held; `release_lapsed` drops it later.
            if entry is not None and entry[1] == expires_at and entry[0] not in jobs:
                del keys[old_key]
        entry = keys.get(key)
        if entry is None:
            return None
        if entry[1] > now or entry[0] in jobs:
            return entry[0]
        del keys[key]
        return None

    def release_lapsed(self, key: str, job_id: str, now: float) -> None:
        """Drop `key` with its job `job_id`, which leaves the queue, if its TTL ran out."""
        entry = self.keys.get(key)
        # Only a key whose TTL already ran out goes with its job.
        if entry is not None and entry[0] == job_id and entry[1] <= now:
            del self.keys[key]
            if not self.keys:
                self.expiries.clear()

    def clear(self) -> None:
        """Forget every key."""
        self.keys.clear()
        self.expiries.clear()
