"""Cross-process coordination on PostgreSQL: locks, rate limiter, idempotency store, cache.

Locks are rows with an expiry in a lock table, not advisory locks. A session-level
advisory lock lives as long as its connection, so every held lock would pin a pooled
connection, and it never expires while a hung holder keeps that connection open. A
row with ``expires_at`` is taken atomically by one INSERT ... ON CONFLICT, holds across
processes, and frees itself when its timeout passes (a crashed holder included). A
release NOTIFYs the lock's channel, so waiters retry at once instead of polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from lexigram.contracts.tasks import TaskConfigurationError
from lexigram.tasks.backends.postgres._connection import Database, Listener
from lexigram.tasks.backends.postgres._expiry import UNEXPIRED
from lexigram.tasks.backends.postgres._options import DEFAULT_SCHEMA, channel_name
from lexigram.tasks.backends.postgres._stores import (
    _deleted,
    _SweptTable,
    _TableStore,
    dumps,
    loads,
)

_SAFETY_NET = 5.0


class PostgresLock:
    """A lock on one key, held across processes until released or `timeout` passes.

    Built by `PostgresLockManager.acquire`; use ``async with manager.acquire("k"):``.
    """

    def __init__(self, manager: PostgresLockManager, key: str, timeout: float) -> None:
        self._manager = manager
        self.key = key
        self.timeout = timeout
        self.token = uuid.uuid4().hex
        self.held = False

    def __repr__(self) -> str:
        return f"PostgresLock(key={self.key!r}, timeout={self.timeout!r}, held={self.held})"

    async def try_acquire(self) -> bool:
        """Take the lock without waiting; True if taken."""
        taken, _ = await self._manager._try(self.key, self.token, self.timeout)  # noqa: SLF001 - the manager's own lock
        self.held = taken
        return taken

    async def acquire(self) -> bool:
        """Take the lock without waiting; True if taken."""
        return await self.try_acquire()

    async def acquire_wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds (None = forever) for the lock; True if taken.

        A waiter retries when the holder releases (NOTIFY), when the holder's expiry
        passes, and every few seconds as a safety net.
        """
        loop = asyncio.get_running_loop()
        deadline = math.inf if timeout is None else loop.time() + timeout
        released = await self._manager._watch(self.key)  # noqa: SLF001 - the manager's own lock
        try:
            while True:
                released.clear()
                taken, remaining = await self._manager._try(self.key, self.token, self.timeout)  # noqa: SLF001
                if taken:
                    self.held = True
                    return True
                left = deadline - loop.time()
                if left <= 0:
                    return False
                wait = min(left, _SAFETY_NET, max(remaining, 0.001))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(released.wait(), wait)
        finally:
            self._manager._unwatch(self.key, released)  # noqa: SLF001

    async def release(self) -> None:
        """Release the lock if this holder still owns it (else nothing happens)."""
        self.held = False
        await self._manager._release(self.key, self.token)  # noqa: SLF001

    async def __aenter__(self) -> Self:
        await self.acquire_wait(None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.release()


class PostgresLockManager(_SweptTable):
    """Creates `PostgresLock` objects that hold across processes and expire on timeout.

    A released lock's row is deleted; the row of a holder that never released (its
    process killed) expires, and a later acquire of the same key takes it over. One on a
    key nobody takes again is swept out by the acquires of any key (`ExpiredRows`).
    """

    _what = "lock table"
    _table = "locks"
    _keys = ("key",)
    _rows = "expired locks"

    def __init__(
        self, db: Database, *, schema: str = DEFAULT_SCHEMA, must_exist: bool = False
    ) -> None:
        super().__init__(db, schema=schema, must_exist=must_exist)
        self.channel = channel_name(schema, "locks")
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._listener: Listener | None = None
        self._listen_lock = asyncio.Lock()

    def acquire(self, key: str, timeout: float = 60.0) -> PostgresLock:
        """Return a lock on `key` that auto-releases after `timeout` seconds.

        Use as ``async with manager.acquire("user:1"):`` (waits) or call
        ``await lock.try_acquire()`` (does not wait).
        """
        if not timeout > 0:
            msg = f"Lock timeout={timeout!r} for key {key!r} is not positive. Use e.g. 60.0."
            raise TaskConfigurationError(msg)
        return PostgresLock(self, key, float(timeout))

    async def _try(self, key: str, token: str, timeout: float) -> tuple[bool, float]:
        """Take `key` for `token`; return (taken, seconds until the holder's lock expires)."""
        self.expiry.written()
        row = await self._fetch(
            f"""
WITH got AS (
    INSERT INTO {self._s}.locks AS l (key, token, expires_at)
    VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
    ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
        WHERE l.expires_at <= clock_timestamp()
    RETURNING 1
)
SELECT (SELECT count(*) FROM got) AS taken,
       (SELECT extract(epoch FROM expires_at - clock_timestamp())::float8
        FROM {self._s}.locks WHERE key = $1) AS remaining""",  # noqa: S608 - validated
            key,
            token,
            timeout,
        )
        taken = bool(row[0]["taken"])
        remaining = row[0]["remaining"]
        return taken, (0.0 if remaining is None else float(remaining))

    async def _release(self, key: str, token: str) -> None:
        await self._fetch(
            f"""
WITH gone AS (
    DELETE FROM {self._s}.locks WHERE key = $1 AND token = $2 RETURNING key
)
SELECT pg_notify($3, key) FROM gone""",  # noqa: S608 - validated
            key,
            token,
            self.channel,
        )

    async def _watch(self, key: str) -> asyncio.Event:
        if self._listener is None:
            async with self._listen_lock:
                if self._listener is None:
                    listener = await Listener.acquire(self._db.dsn)
                    await listener.subscribe(self.channel, self._on_notify)
                    self._listener = listener
        event = asyncio.Event()
        self._watchers.setdefault(key, set()).add(event)
        return event

    def _unwatch(self, key: str, event: asyncio.Event) -> None:
        events = self._watchers.get(key)
        if events is not None:
            events.discard(event)
            if not events:
                del self._watchers[key]

    def _on_notify(self, payload: str | None) -> None:
        targets = (
            [e for events in self._watchers.values() for e in events]
            if payload is None
            else list(self._watchers.get(payload, ()))
        )
        for event in targets:
            event.set()

    async def close(self) -> None:
        """Stop listening and release the pool."""
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.unsubscribe(self.channel, self._on_notify)
            await listener.release()
        await super().close()


class PostgresRateLimiter(_TableStore):
    """A token bucket in one row, shared by every process using the same `name`.

    Each attempt is one atomic upsert that refills the bucket for the time elapsed
    (server clock) and takes the tokens if enough are there.

    Args:
        db: Database handle.
        schema: Schema of the backend's tables.
        name: Bucket name; processes sharing it share the limit.
        rate: Tokens added per `per` seconds.
        per: Period of `rate`, in seconds.
        burst: Bucket capacity (default `rate`).
        must_exist: Refuse a schema that holds none of the backend's tables instead of
            creating it (the backend's ``must_exist`` option).
    """

    _what = "rate limiter"

    def __init__(
        self,
        db: Database,
        *,
        schema: str = DEFAULT_SCHEMA,
        name: str,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
        must_exist: bool = False,
    ) -> None:
        super().__init__(db, schema=schema, must_exist=must_exist)
        if not rate > 0 or not per > 0 or (burst is not None and not burst > 0):
            msg = (
                f"Rate limiter {name!r} got rate={rate!r}, per={per!r}, burst={burst!r}. "
                "Use positive numbers, e.g. rate=100, per=1.0."
            )
            raise TaskConfigurationError(msg)
        self.name = name
        self.capacity = float(burst if burst is not None else rate)
        self.refill_per_second = float(rate) / float(per)

    async def _attempt(self, tokens: int) -> tuple[bool, float]:
        if tokens > self.capacity:
            msg = (
                f"Rate limiter {self.name!r} cannot grant {tokens} tokens: its capacity is "
                f"{self.capacity:g}. Ask for fewer tokens or raise burst."
            )
            raise TaskConfigurationError(msg)
        refilled = (
            "least($2::float8, r.tokens"
            " + $4::float8 * extract(epoch FROM clock_timestamp() - r.updated_at))"
        )
        rows = await self._fetch(
            f"""
INSERT INTO {self._s}.rate_limits AS r (name, tokens, granted, updated_at)
VALUES ($1, $2::float8 - $3::float8, true, clock_timestamp())
ON CONFLICT (name) DO UPDATE SET
    tokens = CASE WHEN {refilled} >= $3 THEN {refilled} - $3 ELSE {refilled} END,
    granted = {refilled} >= $3,
    updated_at = clock_timestamp()
RETURNING granted, tokens""",  # noqa: S608 - validated
            self.name,
            self.capacity,
            float(tokens),
            self.refill_per_second,
        )
        return bool(rows[0]["granted"]), float(rows[0]["tokens"])

    async def try_acquire(self, tokens: int = 1) -> bool:
        """Take `tokens` if available now; True if taken."""
        granted, _ = await self._attempt(tokens)
        return granted

    async def acquire(self, tokens: int = 1) -> None:
        """Wait until `tokens` are available and take them.

        Sleeping here is the rate limit itself: the wait is computed from the bucket's
        deficit and refill rate, then the bucket is tried again.
        """
        while True:
            granted, available = await self._attempt(tokens)
            if granted:
                return
            await asyncio.sleep(max((tokens - available) / self.refill_per_second, 0.001))


class PostgresIdempotencyStore(_SweptTable):
    """Idempotency records (JSON dicts) under unique keys with a TTL."""

    _what = "idempotency store"
    _table = "idempotency"
    _keys = ("key",)
    _rows = "idempotency records"

    async def set_if_absent(
        self, key: str, record: Mapping[str, Any], ttl: float
    ) -> dict[str, Any] | None:
        """Store `record` unless `key` is held; return the holder's record, or None if stored."""
        self.expiry.written()
        for _ in range(5):
            rows = await self._fetch(
                f"""
WITH ins AS (
    INSERT INTO {self._s}.idempotency AS i (key, record, expires_at)
    VALUES ($1, $2::json, clock_timestamp() + make_interval(secs => $3))
    ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record, expires_at = EXCLUDED.expires_at
        WHERE i.expires_at <= clock_timestamp()
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS stored,
       (SELECT record FROM {self._s}.idempotency WHERE key = $1
        AND expires_at > clock_timestamp()) AS existing""",  # noqa: S608 - validated
                key,
                dumps(dict(record)),
                float(ttl),
            )
            if rows[0]["stored"]:
                return None
            if rows[0]["existing"] is not None:
                return dict(loads(rows[0]["existing"]))
            # The holder committed after this statement's snapshot: look again.
        return await self.get(key)

    async def get(self, key: str) -> dict[str, Any] | None:
        """Return the live record for `key`, or None."""
        text = await self._fetchval(
            f"SELECT record FROM {self._s}.idempotency WHERE key = $1 "  # noqa: S608 - validated
            "AND expires_at > clock_timestamp()",
            key,
        )
        return None if text is None else dict(loads(text))

    async def update(self, key: str, record: Mapping[str, Any], ttl: float) -> None:
        """Replace the record for `key` (and restart its TTL)."""
        self.expiry.written()
        await self._execute(
            f"""
INSERT INTO {self._s}.idempotency (key, record, expires_at)
VALUES ($1, $2::json, clock_timestamp() + make_interval(secs => $3))
ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record, expires_at = EXCLUDED.expires_at""",  # noqa: S608 - validated
            key,
            dumps(dict(record)),
            float(ttl),
        )

    async def delete(self, key: str) -> bool:
        """Delete the record; True if it existed."""
        status = await self._execute(
            f"DELETE FROM {self._s}.idempotency WHERE key = $1",  # noqa: S608 - validated
            key,
        )
        return _deleted(status) > 0


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class PostgresCacheBackend(_SweptTable):
    """A string key-value cache with TTLs, shared by every process using the schema.

    Values are stored as UTF-8 bytes (``bytea``), so any string, U+0000 included, is kept.
    """

    _what = "cache"
    _table = "cache"
    _keys = ("key",)
    _rows = "cache entries"

    async def get(self, key: str) -> str | None:
        """Return the value, or None if absent or expired."""
        value = await self._fetchval(
            f"SELECT value FROM {self._s}.cache WHERE key = $1 AND {UNEXPIRED}",  # noqa: S608 - validated
            key,
        )
        return None if value is None else bytes(value).decode("utf-8")

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store a value, expiring after `ttl` seconds when given (None or <= 0: never)."""
        self.expiry.written()
        await self._execute(
            f"""
INSERT INTO {self._s}.cache (key, value, expires_at)
VALUES ($1, $2, CASE WHEN $3::float8 > 0 THEN clock_timestamp() + make_interval(secs => $3)
                END)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at""",  # noqa: S608 - validated
            key,
            value.encode("utf-8"),
            ttl,
        )

    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store a value only if the key is absent (or expired); True if stored."""
        self.expiry.written()
        rows = await self._fetch(
            f"""
INSERT INTO {self._s}.cache AS c (key, value, expires_at)
VALUES ($1, $2, CASE WHEN $3::float8 > 0 THEN clock_timestamp() + make_interval(secs => $3)
                END)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
    WHERE c.expires_at IS NOT NULL AND c.expires_at <= clock_timestamp()
RETURNING 1""",  # noqa: S608 - validated
            key,
            value.encode("utf-8"),
            ttl,
        )
        return bool(rows)

    async def delete(self, key: str) -> bool:
        """Delete a key; True if it existed (and had not expired)."""
        rows = await self._fetch(
            f"DELETE FROM {self._s}.cache WHERE key = $1 RETURNING {UNEXPIRED} AS live",  # noqa: S608 - validated
            key,
        )
        return bool(rows) and bool(rows[0]["live"])

    async def exists(self, key: str) -> bool:
        """Return True if the key is present and not expired."""
        return await self.get(key) is not None

    async def keys(self, prefix: str) -> list[str]:
        """Return the live keys that start with `prefix` (an index range scan)."""
        rows = await self._fetch(
            f"SELECT key FROM {self._s}.cache WHERE key LIKE $1 AND {UNEXPIRED} ORDER BY key",  # noqa: S608 - validated
            _like_prefix(prefix),
        )
        return [str(row["key"]) for row in rows]

    async def clear(self) -> None:
        """Remove every key."""
        await self._execute(f"DELETE FROM {self._s}.cache")  # noqa: S608 - validated
