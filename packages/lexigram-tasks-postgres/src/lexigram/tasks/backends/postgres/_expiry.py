"""Expired results leave the results table without anyone calling `cleanup_expired`.

Redis drops a result when its key's TTL runs out and SQLite's store deletes expired rows
as it writes; on PostgreSQL an expired result used to stay until the application called
`cleanup_expired()`, which nothing in the worker did, so the table (and every index
write into it) grew with every job ever run. Now the writes of results (the store's own,
and the queue's ack that stores them, `AckAndStore`) start a sweep now and then, in the
background: at most one per store object at a time, at most one a second, each deleting
the expired rows chunk by chunk until it finds fewer than a chunk. A sweep that fails
(the server gone, a permission) is logged and the next one waits a minute.

Rows are picked with ``FOR UPDATE SKIP LOCKED``, so the sweeps of many workers share the
expired rows instead of queueing on each other's locks, and a result being re-stored
right now is left for a later sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

# Its records keep the logger of `_stores`, where the result store lives, so that logging
# configurations naming that logger see them.
logger = logging.getLogger("lexigram.tasks.backends.postgres._stores")

SWEEP_EVERY = 1.0
"""Seconds from one sweep started by writes to the next."""
SWEEP_CHUNK = 2000
"""Most expired results one statement deletes (a sweep that is behind runs several)."""
_AFTER_FAILURE = 60.0
"""Seconds a failed sweep makes the next one wait (one warning a minute, not per write)."""


def expired_results_sql(results_table: str) -> str:
    """Delete up to $1 expired results of `results_table` (schema-qualified and quoted).

    The bound is ``now()`` (the statement's start outside a transaction), not
    ``clock_timestamp()``: a volatile bound cannot be an index condition, and the sweep
    would read the whole table instead of the expired end of ``results_expiry_idx``.
    """
    return f"""
DELETE FROM {results_table} AS r
USING (SELECT namespace, job_id FROM {results_table}
       WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED) AS e
WHERE r.namespace = e.namespace AND r.job_id = e.job_id"""  # noqa: S608 - a validated identifier


class ResultExpiry:
    """The sweeps of one result store.

    Args:
        delete: Runs a ``DELETE`` with its arguments on the store's database (migrations
            applied first) and returns how many rows it deleted.
        results_table: The results table, schema-qualified and quoted.
    """

    def __init__(self, delete: Callable[[str, int], Awaitable[int]], results_table: str) -> None:
        self._delete = delete
        self.sql = expired_results_sql(results_table)
        self._next_at = -math.inf
        self._running: asyncio.Task[None] | None = None

    def written(self) -> None:
        """Note a write of results: start a background sweep if one is due."""
        if self._running is not None:
            return
        now = time.monotonic()
        if now < self._next_at:
            return
        self._next_at = now + SWEEP_EVERY
        self._running = asyncio.get_running_loop().create_task(self._sweep_in_background())

    async def sweep(self) -> int:
        """Delete every expired result now, chunk by chunk; return how many."""
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
                "Could not delete expired results (%s); the next sweep is in %.0f s.",
                exc,
                _AFTER_FAILURE,
            )
        finally:
            self._running = None
