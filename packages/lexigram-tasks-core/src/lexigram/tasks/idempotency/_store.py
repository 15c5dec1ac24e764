"""`InMemoryIdempotencyStore`: idempotency records in a dict, each with its own TTL."""

from __future__ import annotations

import copy
import heapq
import time
from collections.abc import Callable, Mapping
from typing import Any


class InMemoryIdempotencyStore:
    """Idempotency records held in memory (one process); implements `IdempotencyStoreProtocol`.

    A record disappears `ttl` seconds after it was last written. `set_if_absent` is
    atomic within the event loop (no await between the check and the write), which is
    what makes two concurrent submissions of one key resolve to one winner. Backends
    offer shared versions through `create_idempotency_store`.

    Args:
        clock: Monotonic clock in seconds (tests may pass a fake one).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[str, tuple[float, dict[str, Any]]] = {}
        self._expiry: list[tuple[float, str]] = []  # heap; entries may be stale

    def __repr__(self) -> str:
        return f"InMemoryIdempotencyStore(records={len(self)})"

    def __len__(self) -> int:
        self._purge()
        return len(self._records)

    async def set_if_absent(
        self, key: str, record: Mapping[str, Any], ttl: float
    ) -> dict[str, Any] | None:
        """Store `record` unless `key` holds a live record.

        Returns:
            A copy of the existing record, or None if `record` was stored.
        """
        self._purge()
        existing = self._records.get(key)
        if existing is not None:
            return copy.deepcopy(existing[1])
        self._write(key, record, ttl)
        return None

    async def get(self, key: str) -> dict[str, Any] | None:
        """Return a copy of the live record for `key`, or None."""
        self._purge()
        existing = self._records.get(key)
        return None if existing is None else copy.deepcopy(existing[1])

    async def update(self, key: str, record: Mapping[str, Any], ttl: float) -> None:
        """Replace (or create) the record for `key`, expiring `ttl` seconds from now."""
        self._purge()
        self._write(key, record, ttl)

    async def delete(self, key: str) -> bool:
        """Delete the record; True if a live one existed."""
        self._purge()
        return self._records.pop(key, None) is not None

    def _write(self, key: str, record: Mapping[str, Any], ttl: float) -> None:
        expires_at = self._clock() + max(0.0, ttl)
        self._records[key] = (expires_at, copy.deepcopy(dict(record)))
        heapq.heappush(self._expiry, (expires_at, key))

    def _purge(self) -> None:
        now = self._clock()
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            current = self._records.get(key)
            # Only drop the record this heap entry was for; a rewrite pushed a new one.
            if current is not None and current[0] == expires_at:
                del self._records[key]
