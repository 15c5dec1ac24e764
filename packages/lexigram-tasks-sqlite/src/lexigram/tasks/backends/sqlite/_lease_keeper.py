"""Lease renewal for a worker's lease keeper: one write transaction renews every lease.

The renewer runs from the keeper's loop with a `sqlite3` connection of its own, so it
needs neither the worker's event loop nor the queue's database thread. Its statements run
in a worker thread of the keeper's loop, where waiting for another connection's write lock
(SQLite's own busy timeout) delays no other keeper. Each UPDATE checks the token and expiry as
`extend_lease` does, so a stale token changes nothing and is reported.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence

from lexigram.contracts.tasks import BackendConnectionError

_EXTEND = (
    "UPDATE lexigram_jobs SET available_at = ? "
    "WHERE id = ? AND queue = ? AND lease_token = ? AND available_at > ?"
)


class SQLiteLeaseRenewer:
    """`LeaseRenewerProtocol` for one SQLite queue: its own connection, one transaction.

    Args:
        path: The database file (the queue's).
        queue_name: The queue whose leases it renews.
        busy_timeout: Seconds to wait for another connection's write lock.
    """

    def __init__(self, path: str, queue_name: str, busy_timeout: float) -> None:
        self._path = path
        self._queue_name = queue_name
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    async def renew(self, leases: Sequence[tuple[str, str]], seconds: float) -> list[str]:
        """Extend every lease still held under its token; return the ids of the others."""
        if not leases:
            return []
        try:
            # On a thread: the keeper's loop serves every worker of the process, and the
            # write lock may take a moment.
            return await asyncio.to_thread(self._renew, leases, seconds)
        except sqlite3.Error as exc:
            self._drop()
            msg = (
                f"Renewing {len(leases)} lease(s) in the SQLite database {self._path!r} "
                f"failed ({exc}); the lease keeper tries again at its next tick."
            )
            raise BackendConnectionError(msg) from exc

    def _renew(self, leases: Sequence[tuple[str, str]], seconds: float) -> list[str]:
        conn = self._conn
        if conn is None:
            conn = self._conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,  # the keeper's loop may use any of its threads
            )
        lost: list[str] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = time.time()
            until = now + seconds
            for job_id, token in leases:
                cursor = conn.execute(_EXTEND, (until, job_id, self._queue_name, token, now))
                if cursor.rowcount != 1:
                    lost.append(job_id)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return lost

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        """Close the renewer's connection; safe to call twice."""
        self._drop()
