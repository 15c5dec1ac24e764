"""Cross-process coordination on SQLite: locks, rate limiters, idempotency, cache, progress.

Every process that opens the file shares these: a lock row held by one token until it
is released or expires, a token bucket per limiter name updated in one write
transaction, key-value rows with expiry, and a short log of progress snapshots per
task that subscribers in any process follow (woken by the file's wake-up sockets).
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Self

from lexigram.contracts.tasks import ProgressSnapshot, ProgressStatus, json_for_storage
from lexigram.tasks.backends.sqlite._base import (
    Purger,
    SQLiteStore,
    Wakeup,
    expiry,
    loads,
)
from lexigram.tasks.backends.sqlite._database import Database
from lexigram.tasks.backends.sqlite._stores import result_topic

_TERMINAL = (ProgressStatus.COMPLETE, ProgressStatus.FAILED)
_PROGRESS_KEPT = 100  # snapshots kept per task for subscribers that fall behind
_LAST_KEPT = 10_000  # running tasks whose last snapshot a tracker remembers
_TRIM_EVERY = 25  # trim a task's log on every 25th snapshot


def lock_topic(key: str) -> str:
    """The wake-up topic published when the lock on `key` is released."""
    return f"l:{key}"


def progress_topic(task_id: str) -> str:
    """The wake-up topic published when the progress of `task_id` changes."""
    return f"p:{task_id}"


class SQLiteLock:
    """A lock on one key, shared by every process on the file; expires after `timeout`.

    A waiter in `acquire_wait` wakes when the holder releases (in any process) or when
    the holder's lease runs out, whichever comes first.
    """

    def __init__(
        self, db: Database, key: str, timeout: float, poll_interval: float, purger: Purger
    ) -> None:
        self._db = db
        self._purger = purger
        self._key = key
        self._timeout = timeout
        self._poll = poll_interval
        self._token = secrets.token_hex(12)
        self._held = False

    def __repr__(self) -> str:
        return f"SQLiteLock(key={self._key!r}, held={self._held})"

    @property
    def key(self) -> str:
        """The locked key."""
        return self._key

    @property
    def held(self) -> bool:
        """Whether this holder took the lock (it may have expired since)."""
        return self._held

    async def _attempt(self) -> float:
        """Try once; 0.0 when taken, else seconds until the current holder's lease ends."""
        key, token, timeout = self._key, self._token, self._timeout
        purger = self._purger

        def run(conn: sqlite3.Connection) -> float:
            purger.after_write(conn, "lexigram_locks", key="key")
            now = time.time()
            cur = conn.execute(
                "INSERT INTO lexigram_locks VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "token = excluded.token, expires_at = excluded.expires_at "
                "WHERE lexigram_locks.expires_at <= ? OR lexigram_locks.token = excluded.token",
                (key, token, now + timeout, now),
            )
            if cur.rowcount > 0:
                return 0.0
            row = conn.execute(
                "SELECT expires_at FROM lexigram_locks WHERE key = ?", (key,)
            ).fetchone()
            return max(0.001, float(row[0]) - now) if row is not None else 0.001

        wait = await self._db.call(run, what=f"take the lock {key!r}")
        self._held = wait == 0.0
        return wait

    async def acquire(self) -> bool:
        """Try to take the lock without waiting; True if taken."""
        return await self._attempt() == 0.0

    async def try_acquire(self) -> bool:
        """Try to take the lock without waiting; True if taken."""
        return await self.acquire()

    async def acquire_wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds (None = forever) for the lock; True if taken."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with Wakeup(self._db, lock_topic(self._key)) as wakeup:
            while True:
                until_free = await self._attempt()
                if until_free == 0.0:
                    return True
                wait = min(until_free, self._poll)
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    wait = min(wait, remaining)
                await wakeup.wait(wait)

    async def release(self) -> None:
        """Release the lock if this holder still owns it."""
        key, token = self._key, self._token

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM lexigram_locks WHERE key = ? AND token = ?", (key, token))

        self._held = False
        await self._db.call(run, topics=(lock_topic(key),), what=f"release the lock {key!r}")

    async def extend(self, seconds: float | None = None) -> bool:
        """Push the expiry to `seconds` (default: the lock's timeout) from now, if still held."""
        key, token = self._key, self._token
        length = self._timeout if seconds is None else seconds

        def run(conn: sqlite3.Connection) -> bool:
            now = time.time()
            cur = conn.execute(
                "UPDATE lexigram_locks SET expires_at = ? WHERE key = ? AND token = ? "
                "AND expires_at > ?",
                (now + length, key, token, now),
            )
            return cur.rowcount > 0

        self._held = await self._db.call(run, what=f"extend the lock {key!r}")
        return self._held

    async def __aenter__(self) -> Self:
        """Wait for the lock and take it."""
        await self.acquire_wait()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """Release the lock."""
        await self.release()


class SQLiteLockManager(SQLiteStore):
    """`LockManagerProtocol` on SQLite: locks that hold across processes.

    A released lock's row is deleted; that of a holder killed before releasing expires,
    and the acquires of any key delete expired rows now and then (as storing a result
    deletes expired results), so a key nobody takes again does not stay forever.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._purger = Purger()  # used on the database thread only, like the results'

    def acquire(self, key: str, timeout: float = 60.0) -> SQLiteLock:
        """Return a lock on `key` that auto-releases after `timeout` seconds.

        Use as ``async with manager.acquire("user:1"):``.
        """
        return SQLiteLock(self._db, key, timeout, self.options.poll_interval, self._purger)


class SQLiteRateLimiter(SQLiteStore):
    """A token bucket shared by every process using the same `name` on the file.

    Args:
        name: Limiter name, e.g. ``"global"`` or ``"queue:emails"``.
        rate: Tokens per `per` seconds.
        per: Window length in seconds.
        burst: Bucket capacity (default: `rate`).
    """

    def __init__(
        self,
        *args: Any,
        name: str,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if rate <= 0 or per <= 0:
            msg = f"Rate limiter {name!r}: rate={rate!r} per={per!r}. Use positive numbers."
            raise ValueError(msg)
        self.name = name
        self.rate = float(rate)
        self.per = float(per)
        self.burst = float(burst if burst is not None else rate)

    def __repr__(self) -> str:
        return f"SQLiteRateLimiter(name={self.name!r}, rate={self.rate}, per={self.per})"

    async def _take(self, tokens: int) -> float:
        """Take `tokens` if available: 0.0, else seconds until they will be."""
        name, burst, per_second = self.name, self.burst, self.rate / self.per

        def run(conn: sqlite3.Connection) -> float:
            now = time.time()
            row = conn.execute(
                "SELECT tokens, updated_at FROM lexigram_buckets WHERE name = ?", (name,)
            ).fetchone()
            level = (
                burst if row is None else min(burst, row[0] + max(0.0, now - row[1]) * per_second)
            )
            wait = 0.0
            if level >= tokens:
                level -= tokens
            else:
                wait = (tokens - level) / per_second
            conn.execute(
                "INSERT OR REPLACE INTO lexigram_buckets VALUES (?, ?, ?)", (name, level, now)
            )
            return wait

        return await self._db.call(run, what=f"take from rate limiter {name!r}")

    def _check(self, tokens: int) -> None:
        if tokens > self.burst:
            msg = (
                f"Rate limiter {self.name!r} cannot grant {tokens} tokens at once: its burst is "
                f"{self.burst:g}. Ask for fewer, or raise burst."
            )
            raise ValueError(msg)

    async def try_acquire(self, tokens: int = 1) -> bool:
        """Take `tokens` if available now; True if taken."""
        self._check(tokens)
        return await self._take(tokens) == 0.0

    async def acquire(self, tokens: int = 1) -> None:
        """Wait until `tokens` are available and take them."""
        self._check(tokens)
        while True:
            wait = await self._take(tokens)
            if wait == 0.0:
                return
            await asyncio.sleep(wait)


class _KeyValue(SQLiteStore):
    _namespace = "kv"

    async def _get(self, key: str) -> str | None:
        namespace = self._namespace

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM lexigram_kv WHERE namespace = ? AND key = ? "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (namespace, key, time.time()),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._db.call(run, write=False, what="read a key")

    async def _set(self, key: str, value: str, ttl: float | None) -> None:
        namespace = self._namespace
        until = None if ttl is None or ttl <= 0 else expiry(ttl)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO lexigram_kv VALUES (?, ?, ?, ?)",
                (namespace, key, value, until),
            )

        await self._db.call(run, what="write a key")

    async def _set_if_absent(self, key: str, value: str, ttl: float | None) -> str | None:
        """Store unless a live value exists; return that value, or None if stored."""
        namespace = self._namespace
        until = None if ttl is None or ttl <= 0 else expiry(ttl)

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM lexigram_kv WHERE namespace = ? AND key = ? "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (namespace, key, time.time()),
            ).fetchone()
            if row is not None:
                return str(row[0])
            conn.execute(
                "INSERT OR REPLACE INTO lexigram_kv VALUES (?, ?, ?, ?)",
                (namespace, key, value, until),
            )
            return None

        return await self._db.call(run, what="claim a key")

    async def _delete(self, key: str) -> bool:
        namespace = self._namespace

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM lexigram_kv WHERE namespace = ? AND key = ? "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (namespace, key, time.time()),
            )
            conn.execute(
                "DELETE FROM lexigram_kv WHERE namespace = ? AND key = ?", (namespace, key)
            )
            return cur.rowcount > 0

        return await self._db.call(run, what="delete a key")


class SQLiteIdempotencyStore(_KeyValue):
    """`IdempotencyStoreProtocol` on SQLite: JSON records under keys with a TTL."""

    _namespace = "idempotency"

    async def set_if_absent(
        self, key: str, record: Mapping[str, Any], ttl: float
    ) -> dict[str, Any] | None:
        """Store `record` unless `key` exists; return the existing record, or None if stored."""
        found = await self._set_if_absent(
            key, json_for_storage(dict(record), what="idempotency record"), ttl
        )
        return None if found is None else dict(loads(found))

    async def get(self, key: str) -> dict[str, Any] | None:
        """Return the record for `key`, or None."""
        found = await self._get(key)
        return None if found is None else dict(loads(found))

    async def update(self, key: str, record: Mapping[str, Any], ttl: float) -> None:
        """Replace the record for `key`."""
        await self._set(key, json_for_storage(dict(record), what="idempotency record"), ttl)

    async def delete(self, key: str) -> bool:
        """Delete the record; True if it existed."""
        return await self._delete(key)


class SQLiteCacheBackend(_KeyValue):
    """`CacheBackendProtocol` on SQLite: string values with optional TTLs."""

    _namespace = "cache"

    async def get(self, key: str) -> str | None:
        """Return the value, or None if absent or expired."""
        return await self._get(key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store a value, expiring after `ttl` seconds when given."""
        await self._set(key, value, ttl)

    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store a value only if the key is absent; True if stored."""
        return await self._set_if_absent(key, value, ttl) is None

    async def delete(self, key: str) -> bool:
        """Delete a key; True if it existed."""
        return await self._delete(key)

    async def exists(self, key: str) -> bool:
        """Return True if the key is present."""
        return await self._get(key) is not None

    async def keys(self, prefix: str) -> list[str]:
        """Return the keys that start with `prefix`."""
        namespace = self._namespace

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT key FROM lexigram_kv WHERE namespace = ? AND substr(key, 1, ?) = ? "
                "AND (expires_at IS NULL OR expires_at > ?) ORDER BY key",
                (namespace, len(prefix), prefix, time.time()),
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self._db.call(run, write=False, what="list keys")


class SQLiteProgressTracker(SQLiteStore):
    """Track task progress in the file and stream it live to subscribers in any process.

    Each change appends a snapshot to a short per-task log (the last 100 are kept) and
    wakes subscribers; `subscribe` yields the current snapshot, then every later one
    in order, and ends after COMPLETE or FAILED.

    A worker logs nothing for a job that never reported progress (its handler took no
    `ProgressTracker`): for a task with no snapshot at all, `get` and `subscribe`
    answer from its stored result in the same file (COMPLETE at 100 % for a success,
    FAILED with the error otherwise).
    """

    def __init__(self, *args: Any, ttl: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ttl = self.options.progress_ttl if ttl is None else ttl
        self._purger = Purger()
        # The last snapshot this object published per running task, so that `complete`
        # and `fail` need not read it back.
        self._last: dict[str, ProgressSnapshot] = {}

    def _record(
        self,
        task_id: str,
        build: Callable[[ProgressSnapshot | None], ProgressSnapshot],
        *,
        needs_last: bool,
    ) -> None:
        """Append the snapshot `build(last snapshot)` to the task's log (write-behind).

        The last snapshot comes from this object's memory when it published it, else it
        is read in the same transaction; either way nothing is awaited.
        """
        cached = self._last.get(task_id) if needs_last else None
        ttl, now = self._ttl, time.time()
        purger = self._purger
        purge = ttl > 0 and purger.due(now)

        def run(conn: sqlite3.Connection) -> None:
            last = cached
            if needs_last and last is None:
                row = conn.execute(
                    "SELECT data FROM lexigram_progress_events WHERE task_id = ? "
                    "ORDER BY seq DESC LIMIT 1",
                    (task_id,),
                ).fetchone()
                last = None if row is None else ProgressSnapshot.from_dict(loads(row[0]))
            snapshot = build(last)
            data = json_for_storage(snapshot.to_dict(), what=f"progress of task {task_id}")
            seq = conn.execute(
                "INSERT INTO lexigram_progress_events SELECT ?, coalesce(max(seq), 0) + 1, ?, ? "
                "FROM lexigram_progress_events WHERE task_id = ? RETURNING seq",
                (task_id, data, time.time(), task_id),
            ).fetchone()[0]
            if seq > _PROGRESS_KEPT and seq % _TRIM_EVERY == 0:
                conn.execute(
                    "DELETE FROM lexigram_progress_events WHERE task_id = ? AND seq <= ?",
                    (task_id, seq - _PROGRESS_KEPT),
                )
            if purge:
                cur = conn.execute(
                    "DELETE FROM lexigram_progress_events WHERE (task_id, seq) IN "
                    "(SELECT task_id, seq FROM lexigram_progress_events WHERE at <= ? LIMIT ?)",
                    (now - ttl, purger.chunk),
                )
                purger.done(cur.rowcount)

        self._db.submit(run, topics=(progress_topic(task_id),), what="record progress")

    async def update(self, task_id: str, current: int, total: int, message: str = "") -> None:
        """Record incremental progress for a task and wake its subscribers (write-behind)."""
        snapshot = ProgressSnapshot(
            task_id=task_id,
            current=current,
            total=total,
            status=ProgressStatus.RUNNING,
            message=message,
        )
        if len(self._last) >= _LAST_KEPT:
            self._last.pop(next(iter(self._last)))
        self._last[task_id] = snapshot
        self._record(task_id, lambda _: snapshot, needs_last=False)

    async def complete(self, task_id: str, result: str = "") -> None:
        """Mark a task completed (current = total) and end its subscriptions."""

        def build(last: ProgressSnapshot | None) -> ProgressSnapshot:
            total = last.total if last is not None else 0
            if total <= 0:
                total = last.current if last is not None else 0
            return ProgressSnapshot(
                task_id=task_id,
                current=total,
                total=total,
                status=ProgressStatus.COMPLETE,
                message=result,
            )

        self._record(task_id, build, needs_last=True)
        self._last.pop(task_id, None)

    async def fail(self, task_id: str, error: str) -> None:
        """Mark a task failed and end its subscriptions."""

        def build(last: ProgressSnapshot | None) -> ProgressSnapshot:
            return ProgressSnapshot(
                task_id=task_id,
                current=last.current if last is not None else 0,
                total=last.total if last is not None else 0,
                status=ProgressStatus.FAILED,
                message=last.message if last is not None else "",
                error=error,
            )

        self._record(task_id, build, needs_last=True)
        self._last.pop(task_id, None)

    async def _since(self, task_id: str, seen: int) -> list[tuple[int, ProgressSnapshot]]:
        """Snapshots after `seen` in order; for `seen` -1 only the latest one.

        While the task has no snapshot at all (`seen` -1 or 0), its stored result stands
        in for one (seq 0, terminal).
        """

        def run(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            if seen <= 0:
                found = _latest_or_result(conn, task_id)
                if found is None or seen < 0 or found[0] == 0:
                    return [] if found is None else [found]
            rows = conn.execute(
                "SELECT seq, data FROM lexigram_progress_events WHERE task_id = ? "
                "AND seq > ? ORDER BY seq",
                (task_id, seen),
            )
            return [(int(row[0]), str(row[1])) for row in rows]

        rows = await self._db.call(run, write=False, what="read progress")
        return [(seq, _snapshot(task_id, seq, raw)) for seq, raw in rows]

    async def get(self, task_id: str) -> ProgressSnapshot | None:
        """Return the most recent snapshot, or None if the task is unknown."""
        found = await self._since(task_id, -1)
        return found[0][1] if found else None

    def subscribe(self, task_id: str) -> AsyncIterator[ProgressSnapshot]:
        """Return an async iterator of snapshots for `task_id` (not a coroutine).

        It yields the current snapshot (if any), then each later one, and ends after
        COMPLETE or FAILED; a subscriber that arrives after the end gets the terminal
        snapshot once.
        """
        return self._follow(task_id)

    async def _follow(self, task_id: str) -> AsyncIterator[ProgressSnapshot]:
        seen = -1  # first read: the current snapshot only; then every later one
        with Wakeup(self._db, progress_topic(task_id), result_topic(task_id)) as wakeup:
            while True:
                found = await self._since(task_id, seen)
                seen = max(seen, 0)
                for seq, snapshot in found:
                    seen = seq
                    yield snapshot
                    if snapshot.status in _TERMINAL:
                        return
                await wakeup.wait(self.options.poll_interval)


def _latest_or_result(conn: sqlite3.Connection, task_id: str) -> tuple[int, str] | None:
    """The task's latest snapshot as (seq, data); without one, (0, result data) if stored."""
    row = conn.execute(
        "SELECT seq, data FROM lexigram_progress_events WHERE task_id = ? "
        "ORDER BY seq DESC LIMIT 1",
        (task_id,),
    ).fetchone()
    if row is None:
        row = conn.execute(
            "SELECT 0, data FROM lexigram_results WHERE job_id = ? AND expires_at > ?",
            (task_id, time.time()),
        ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def _snapshot(task_id: str, seq: int, raw: str) -> ProgressSnapshot:
    """A logged snapshot, or (seq 0) the terminal snapshot of the task's stored result."""
    data = loads(raw)
    if seq > 0:
        return ProgressSnapshot.from_dict(data)
    if data.get("success"):
        return ProgressSnapshot(task_id=task_id, current=1, total=1, status=ProgressStatus.COMPLETE)
    return ProgressSnapshot(
        task_id=task_id,
        current=0,
        total=0,
        status=ProgressStatus.FAILED,
        error=str(data.get("error") or "failed"),
    )
