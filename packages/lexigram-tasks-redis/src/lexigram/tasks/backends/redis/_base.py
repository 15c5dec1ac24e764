"""Shared plumbing of the Redis stores: connector ownership, JSON, server-side time."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from lexigram.tasks.backends.redis._connection import DEFAULT_URL, RedisConnector
from lexigram.tasks.backends.redis._keys import StoreKeys

T = TypeVar("T")


NOW_MS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
"""
"""Lua helper: the server's clock in epoch milliseconds (shared by every process)."""


def loads(raw: bytes | str) -> Any:
    """Decode JSON written by `dumps`."""
    return json.loads(raw)


def ttl_ms(seconds: float | None) -> int | None:
    """Milliseconds for PX, or None for "no expiry" (None or not positive)."""
    if seconds is None or not seconds > 0 or not math.isfinite(seconds):
        return None
    return max(1, math.ceil(seconds * 1000))


class RedisStore:
    """Base of every Redis store: one connector (shared or owned) and a key namespace.

    Args:
        url: Redis URL, used when `connector` is not given.
        key_prefix: First part of the store's hash tag ``{<key_prefix>:<store>}``.
        connector: A shared `RedisConnector` (the backend object passes the queue's).
        client: An existing redis-py asyncio client (not closed by `close`).
    """

    _store = "store"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        key_prefix: str = "lexigram",
        connector: RedisConnector | None = None,
        client: Any | None = None,
    ) -> None:
        self._owns_connector = connector is None
        self._connector = (
            connector.share() if connector is not None else RedisConnector(url, client=client)
        )
        self._key_prefix = key_prefix
        self.namespace = StoreKeys.build(key_prefix, self._store)

    @property
    def connector(self) -> RedisConnector:
        """The connection this store talks through (shared with its backend's queue)."""
        return self._connector

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={self._connector.masked_url!r}, "
            f"namespace={self.namespace.tag!r})"
        )

    async def _call(
        self,
        what: str,
        fn: Callable[[Any], Awaitable[T]],
        *,
        blocking: bool = False,
        fast: bool = False,
    ) -> T:
        return await self._connector.call(f"{self._store} {what}", fn, blocking=blocking, fast=fast)

    async def _command(self, what: str, *args: Any) -> Any:
        """Run one non-blocking command on the multiplexed connection (`_call` with fast).

        A store's single-key calls ride it as the queue's scripts do: through the
        redis-py pool, each would also pay a pool round (acquire, probe, release).
        """
        return await self._call(what, lambda c: c.execute_command(*args), fast=True)

    async def close(self) -> None:
        """Close the connection pool if this store built it, else release its share of it.

        The last share released closes a shared connector (see `RedisConnector.share`).
        Safe to call twice; a store used again after `close` reconnects lazily.
        """
        if self._owns_connector:
            await self._connector.close()
        else:
            await self._connector.release()
