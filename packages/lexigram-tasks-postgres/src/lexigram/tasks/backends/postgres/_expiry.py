"""Expired rows (results, progress, idempotency records, cache entries, locks) leave by themselves.

Redis drops a result or a progress entry when its key's TTL runs out, and SQLite's stores
delete expired rows as they write. On PostgreSQL an expired result used to stay until the
application called `cleanup_expired()`, which nothing in a worker did, a progress entry
had no expiry at all, and idempotency records and cache entries were deleted once a
minute by one unbounded statement that read the whole table inside a caller's write. Now
each write of one of these stores (a result stored by the store or by the queue's ack
that stores it, `AckAndStore`; a progress entry saved; an idempotency record or a cache
entry set; a lock acquired) notes itself to the store's `ExpiredRows`, which starts a
sweep in the background: at most one per store object at a time, at most one a second,
each deleting the expired rows chunk by chunk, through an index on their expiry, until
it finds fewer than a chunk. A sweep that fails (the server gone, a permission) is
logged and the next one waits a minute.

Rows are picked with ``FOR UPDATE SKIP LOCKED``, so the sweeps of many workers share the
expired rows instead of queueing on each other's locks, and a row being written right
now is left for a later sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

# Its records keep the logger of `_stores`, where the stores live, so that logging
# configurations naming that logger see them.
logger = logging.getLogger("lexigram.tasks.backends.postgres._stores")

UNEXPIRED = "(expires_at IS NULL OR expires_at > clock_timestamp())"
"""The rows a read may return: those without an expiry or not expired yet."""

SWEEP_EVERY = 1.0
"""Seconds from one sweep started by writes to the next."""
SWEEP_CHUNK = 2000
"""Most expired rows one statement deletes (a sweep that is behind runs several)."""
_AFTER_FAILURE = 60.0
"""Seconds a failed sweep makes the next one wait (one warning a minute, not per write)."""


def expired_rows_sql(table: str, keys: tuple[str, ...]) -> str:
    """Delete up to $1 expired rows of `table` (schema-qualified and quoted).

    The table's primary key is `keys`, and it has an index on ``expires_at``. The bound is
    ``now()`` (the statement's start outside a transaction), not ``clock_timestamp()``: a
    volatile bound cannot be an index condition, and the sweep would read the whole table
    instead of the expired end of the index.
    """
    matched = " AND ".join(f"r.{key} = e.{key}" for key in keys)
    return f"""
DELETE FROM {table} AS r
USING (SELECT {", ".join(keys)} FROM {table}
       WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED) AS e
WHERE {matched}"""  # noqa: S608 - validated identifiers


class ExpiredRows:
    """The sweeps of one store's table.

    Args:
        delete: Runs a ``DELETE`` with its arguments on the store's database (migrations
            applied first) and returns how many rows it deleted.
        table: The store's table, schema-qualified and quoted.
        what: What the rows are, for the log ("results", "progress entries").
        keys: The table's primary key columns.
    """

    def __init__(
        self,
        delete: Callable[[str, int], Awaitable[int]],
        table: str,
        what: str,
        keys: tuple[str, ...] = ("namespace", "job_id"),
    ) -> None:
        self._delete = delete
        self.sql = expired_rows_sql(table, keys)
        self._what = what
        self._next_at = -math.inf
        self._running: asyncio.Task[None] | None = None

    def written(self) -> None:
        """Note a write to the table: start a background sweep if one is due."""
        if self._running is not None:
            return
        now = time.monotonic()
        if now < self._next_at:
            return
        self._next_at = now + SWEEP_EVERY
        self._running = asyncio.get_running_loop().create_task(self._sweep_in_background())

    async def sweep(self) -> int:
        """Delete every expired row now, chunk by chunk; return how many."""
        removed = 0
        while True:
            deleted = await self._delete(self.sql, SWEEP_CHUNK)
            removed += deleted
            if deleted < SWEEP_CHUNK:
                return removed

    async def close(self) -> None:
        """Stop a sweep in progress (the next writer's sweep picks up where it stopped)."""
        running, self._running = self._running, None
        if running is not None:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

    async def _sweep_in_background(self) -> None:
        try:
            await self.sweep()
        except Exception as exc:  # a sweep must never fail a write: logged, tried later
            self._next_at = time.monotonic() + _AFTER_FAILURE
            logger.warning(
                "Could not delete expired %s (%s); the next sweep is in %.0f s.",
                self._what,
                exc,
                _AFTER_FAILURE,
            )
        finally:
            self._running = None
