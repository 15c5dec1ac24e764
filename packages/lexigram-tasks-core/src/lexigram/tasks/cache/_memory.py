"""`InMemoryCacheBackend`: a process-local `CacheBackendProtocol` with TTLs."""

from __future__ import annotations

import heapq
import math
import time


class InMemoryCacheBackend:
    """String key-value cache with per-key TTLs, held in this process.

    Implements `CacheBackendProtocol`, so the cache-backed result and progress stores
    run on it in tests and single-process deployments. Expired keys are dropped lazily
    when read and, in bulk, from a heap of expiry times on every write, so memory
    follows the live keys.

    Example:
        cache = InMemoryCacheBackend()
        await cache.set("k", "v", ttl=60)
        assert await cache.get("k") == "v"
    """

    def __init__(self) -> None:
        # key -> (value, monotonic expiry or inf)
        self._data: dict[str, tuple[str, float]] = {}
        self._expiry: list[tuple[float, str]] = []

    def __repr__(self) -> str:
        return f"InMemoryCacheBackend(keys={len(self._data)})"

    def __len__(self) -> int:
        return len(self._data)

    async def get(self, key: str) -> str | None:
        """Return the value, or None if absent or expired."""
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._data[key]
            return None
        return entry[0]

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store a value, expiring after `ttl` seconds when given (None or <= 0: never)."""
        now = time.monotonic()
        self._sweep(now)
        expires = now + ttl if ttl is not None and ttl > 0 else math.inf
        self._data[key] = (value, expires)
        if expires != math.inf:
            heapq.heappush(self._expiry, (expires, key))

    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store a value only if the key is absent (or expired); True if stored."""
        if await self.get(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def delete(self, key: str) -> bool:
        """Delete a key; True if it existed (and had not expired)."""
        entry = self._data.pop(key, None)
        return entry is not None and entry[1] > time.monotonic()

    async def exists(self, key: str) -> bool:
        """Return True if the key is present and not expired."""
        return await self.get(key) is not None

    async def keys(self, prefix: str) -> list[str]:
        """Return the live keys that start with `prefix`."""
        now = time.monotonic()
        self._sweep(now)
        return [k for k, (_, exp) in self._data.items() if exp > now and k.startswith(prefix)]

    async def clear(self) -> None:
        """Remove every key."""
        self._data.clear()
        self._expiry.clear()

    def _sweep(self, now: float) -> None:
        """Drop keys whose expiry has passed (stale heap entries are skipped)."""
        expiry = self._expiry
        data = self._data
        while expiry and expiry[0][0] <= now:
            expires, key = heapq.heappop(expiry)
            entry = data.get(key)
            if entry is not None and entry[1] == expires:
                del data[key]
        if not data:
            expiry.clear()
