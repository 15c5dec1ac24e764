"""Where job-state records live: the store protocols `JobStates` uses, and the in-process store.

`LocalStateStore` is the default state store of a RabbitMQ queue: one per queue name in
a process. A shared store (Redis, PostgreSQL, ...) is any `CacheBackendProtocol`; one
that also offers `BatchCacheProtocol` (the Redis cache does) takes many keys per round
trip, and any other is driven key by key (`KeyByKey`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from lexigram.contracts.tasks import CacheBackendProtocol

logger = logging.getLogger(__name__)

Write = tuple[str, str, float | None]
"""A value to store: key, value, TTL in seconds (None: no expiry)."""


@runtime_checkable
class BatchCacheProtocol(Protocol):
    """A `CacheBackendProtocol` store that reads and writes many keys in one round trip.

    Optional: `JobStates` uses it when its store has it, and otherwise makes the same
    calls key by key.
    """

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Return the value of each key, in order (None if absent or expired)."""
        ...

    async def write_many(self, sets: Sequence[Write], deletes: Sequence[str]) -> None:
        """Store `sets` (a TTL that is not positive deletes), then delete `deletes`."""
        ...


class KeyByKey:
    """`BatchCacheProtocol` over a store without it: one call per key, all at once."""

    def __init__(self, store: CacheBackendProtocol) -> None:
        self._store = store

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        return list(await asyncio.gather(*(self._store.get(key) for key in keys)))

    async def write_many(self, sets: Sequence[Write], deletes: Sequence[str]) -> None:
        await asyncio.gather(*(self._store.set(key, value, ttl) for key, value, ttl in sets))
        await asyncio.gather(*(self._store.delete(key) for key in deletes))


class LocalStateStore:
    """In-process `CacheBackendProtocol` store with TTLs and a size bound.

    The default job-state store: exact for jobs enqueued and consumed in one process,
    and blind to other processes (pass a shared store for that). When it holds
    `max_entries` keys the oldest are evicted, so a producer-only process whose jobs
    are acked elsewhere does not grow without bound.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._data: OrderedDict[str, tuple[str, float | None]] = OrderedDict()
        self._max_entries = max_entries
        self._clock = clock
        self._warned = False

    def __len__(self) -> int:
        return len(self._data)

    def _live(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self._clock():
            del self._data[key]
            return None
        return value

    def _put(self, key: str, value: str, ttl: float | None) -> None:
        expires = None if ttl is None else self._clock() + ttl
        self._data[key] = (value, expires)
        self._data.move_to_end(key)
        if len(self._data) > self._max_entries:
            self._data.popitem(last=False)
            if not self._warned:
                self._warned = True
                logger.warning(
                    "The in-process RabbitMQ job-state store reached %d records and evicts "
                    "the oldest; get_job/delete_job may miss old jobs. Pass a shared "
                    "state_store (e.g. Redis) when producers and workers are separate processes.",
                    self._max_entries,
                )

    async def get(self, key: str) -> str | None:
        """Return the value, or None if absent or expired."""
        return self._live(key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store a value, expiring after `ttl` seconds when given."""
        self._put(key, value, ttl)

    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store a value only if the key is absent; True if stored."""
        if self._live(key) is not None:
            return False
        self._put(key, value, ttl)
        return True

    async def delete(self, key: str) -> bool:
        """Delete a key; True if it existed."""
        return self._data.pop(key, None) is not None

    async def exists(self, key: str) -> bool:
        """Return True if the key is present."""
        return self._live(key) is not None

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Return the value of each key, in order (None if absent or expired)."""
        return [self._live(key) for key in keys]

    async def write_many(self, sets: Sequence[Write], deletes: Sequence[str]) -> None:
        """Store `sets` (a TTL that is not positive deletes), then delete `deletes`."""
        for key, value, ttl in sets:
            if ttl is not None and not ttl > 0:
                self._data.pop(key, None)
            else:
                self._put(key, value, ttl)
        for key in deletes:
            self._data.pop(key, None)

    async def keys(self, prefix: str) -> list[str]:
        """Return the live keys that start with `prefix`."""
        now = self._clock()
        return [
            key
            for key, (_, expires) in self._data.items()
            if key.startswith(prefix) and (expires is None or expires > now)
        ]
