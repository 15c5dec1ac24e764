"""Key-value stores on Redis: idempotency records and the platform cache."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lexigram.contracts.tasks import json_for_storage
from lexigram.tasks.backends.redis._base import RedisStore, loads, ttl_ms
from lexigram.tasks.backends.redis._connection import DEFAULT_URL, LuaScript, RedisConnector
from lexigram.tasks.backends.redis._keys import check_key_prefix, glob_escape

# KEYS: record. ARGV: json, ttl ms (0 = none). Returns the existing record or nil.
_SET_IF_ABSENT = LuaScript(
    "idempotency_set_if_absent",
    """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return false
""",
)


# KEYS: the keys to store, then the keys to delete. ARGV: how many to store, then a value
# and a ttl ms (0 = none) per key stored.
_WRITE_MANY = LuaScript(
    "cache_write_many",
    """
local stored = tonumber(ARGV[1])
for i = 1, stored do
  local ttl = tonumber(ARGV[2 * i + 1])
  if ttl > 0 then
    redis.call('SET', KEYS[i], ARGV[2 * i], 'PX', ttl)
  else
    redis.call('SET', KEYS[i], ARGV[2 * i])
  end
end
for i = stored + 1, #KEYS, 1000 do
  redis.call('DEL', unpack(KEYS, i, math.min(i + 999, #KEYS)))
end
return 0
""",
)


def _expiry(ttl: float | None) -> tuple[str, int] | tuple[()]:
    """The ``PX`` arguments of a SET for `ttl` seconds (none: no expiry)."""
    millis = ttl_ms(ttl)
    return () if millis is None else ("PX", millis)


class RedisIdempotencyStore(RedisStore):
    """`IdempotencyStoreProtocol` on Redis: JSON records under keys with a TTL.

    `set_if_absent` is one script (read and write atomically), so two processes
    submitting the same key concurrently see exactly one winner.

    Args:
        url: Redis URL (when no `connector` is given).
        key_prefix: Namespace ``{<key_prefix>:idempotency}``.
        connector: Shared connection owner.
        client: Existing redis-py asyncio client.
    """

    _store = "idempotency"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        key_prefix: str = "lexigram",
        connector: RedisConnector | None = None,
        client: Any | None = None,
    ) -> None:
        super().__init__(url, key_prefix=key_prefix, connector=connector, client=client)

    def _key(self, key: str) -> str:
        return self.namespace.key("k", key)

    async def set_if_absent(
        self, key: str, record: Mapping[str, Any], ttl: float
    ) -> dict[str, Any] | None:
        """Store `record` unless `key` exists; return the existing record, or None if stored.

        A `ttl` that is not positive stores the record without expiry.
        """
        args = (
            json_for_storage(dict(record), what=f"idempotency record {key!r}"),
            ttl_ms(ttl) or 0,
        )
        keys = (self._key(key),)
        raw = await self._call("set_if_absent", lambda c: _SET_IF_ABSENT(c, keys, args), fast=True)
        return None if raw is None else dict(loads(raw))

    async def get(self, key: str) -> dict[str, Any] | None:
        """Return the record for `key`, or None."""
        raw = await self._command("get", "GET", self._key(key))
        return None if raw is None else dict(loads(raw))

    async def update(self, key: str, record: Mapping[str, Any], ttl: float) -> None:
        """Replace the record for `key` (with a fresh `ttl`)."""
        data = json_for_storage(dict(record), what=f"idempotency record {key!r}")
        await self._command("update", "SET", self._key(key), data, *_expiry(ttl))

    async def delete(self, key: str) -> bool:
        """Delete the record; True if it existed."""
        return bool(await self._command("delete", "DEL", self._key(key)))


class RedisCacheBackend(RedisStore):
    """`CacheBackendProtocol` on Redis: string values with optional TTLs.

    Cache keys carry no hash tag (``<key_prefix>:cache:<key>``): every operation
    touches one key, so on Redis Cluster the cache spreads over all slots.

    Args:
        url: Redis URL (when no `connector` is given).
        key_prefix: Prefix of every cache key.
        connector: Shared connection owner.
        client: Existing redis-py asyncio client.
    """

    _store = "cache"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        key_prefix: str = "lexigram",
        connector: RedisConnector | None = None,
        client: Any | None = None,
    ) -> None:
        super().__init__(url, key_prefix=key_prefix, connector=connector, client=client)
        self._prefix = f"{check_key_prefix(key_prefix)}:cache:"

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> str | None:
        """Return the value, or None if absent or expired."""
        raw = await self._command("get", "GET", self._key(key))
        return None if raw is None else bytes(raw).decode()

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store a value, expiring after `ttl` seconds when given (<= 0: already expired)."""
        if ttl is not None and not ttl > 0:
            await self.delete(key)
            return
        await self._command("set", "SET", self._key(key), value, *_expiry(ttl))

    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store a value only if the key is absent; True if stored."""
        if ttl is not None and not ttl > 0:
            return not await self.exists(key)
        stored = await self._command(
            "set_if_absent", "SET", self._key(key), value, "NX", *_expiry(ttl)
        )
        return bool(stored)

    async def delete(self, key: str) -> bool:
        """Delete a key; True if it existed."""
        return bool(await self._command("delete", "DEL", self._key(key)))

    async def exists(self, key: str) -> bool:
        """Return True if the key is present."""
        return bool(await self._command("exists", "EXISTS", self._key(key)))

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Return the value of each key, in order (None if absent), in one round trip.

        One MGET, on the multiplexed connection when there is one. On Redis Cluster,
        whose cache keys spread over every slot, redis-py sends each node its share.
        """
        if not keys:
            return []
        names = [self._key(key) for key in keys]

        async def run(client: Any) -> list[Any]:
            if _spans_slots(client):
                return list(await client.mget_nonatomic(names))
            return list(await client.execute_command("MGET", *names))

        raws = await self._connector.call(f"{self._store} get_many", run, fast=True)
        return [None if raw is None else bytes(raw).decode() for raw in raws]

    async def write_many(
        self, sets: Sequence[tuple[str, str, float | None]], deletes: Sequence[str]
    ) -> None:
        """Store `sets` (key, value, TTL in seconds or None), then delete `deletes`.

        One round trip: one script call, on the multiplexed connection when there is
        one (on Redis Cluster, a pipeline of a command per key, since the keys spread
        over every slot). A TTL that is not positive deletes the key, as `set` does.
        """
        stored: list[str] = []
        values: list[Any] = []
        gone = [self._key(key) for key in deletes]
        for key, value, ttl in sets:
            if ttl is not None and not ttl > 0:
                gone.append(self._key(key))
            else:
                stored.append(self._key(key))
                values += (value, ttl_ms(ttl) or 0)
        if not stored and not gone:
            return

        async def run(client: Any) -> None:
            if not _spans_slots(client):
                await _WRITE_MANY(client, [*stored, *gone], [len(stored), *values])
                return
            async with client.pipeline(transaction=False) as pipe:
                for index, name in enumerate(stored):
                    pipe.set(name, values[2 * index], px=values[2 * index + 1] or None)
                for name in gone:
                    pipe.delete(name)
                await pipe.execute()

        await self._connector.call(f"{self._store} write_many", run, fast=True)

    async def keys(self, prefix: str) -> list[str]:
        """Return the keys that start with `prefix` (SCAN, never KEYS), sorted."""
        pattern = glob_escape(self._key(prefix)) + "*"
        skip = len(self._prefix)

        async def run(client: Any) -> list[str]:
            found = [
                raw.decode()[skip:] async for raw in client.scan_iter(match=pattern, count=1000)
            ]
            return sorted(set(found))

        return await self._call("keys", run)


def _spans_slots(client: Any) -> bool:
    """True for a Redis Cluster client: a multi-key command must stay within one slot."""
    return hasattr(client, "mget_nonatomic")
