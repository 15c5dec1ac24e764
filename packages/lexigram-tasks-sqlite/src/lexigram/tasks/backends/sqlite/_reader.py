"""`Reader`: a second connection for reads that walk a whole queue, run off the event loop.

`Database` runs its statements on the event loop whenever it can (a thread hop costs
more than a short statement). A read that visits every row, `count` on a queue of a
million jobs (70 ms here with its pages in memory, more without), would stall the loop
and every job on it for that long at each metrics scrape. Such reads go through this
connection instead, on a worker thread: WAL lets it read a committed snapshot while the
main connection goes on writing, and sqlite3 releases the GIL while a statement steps,
so the loop keeps running.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Reader:
    """A lazily opened, query-only connection to `path`, used by one thread at a time.

    Args:
        path: The database file (the main connection has created and migrated it).
        busy_timeout: Seconds a read waits for a lock (in WAL mode only while another
            connection recovers the log).
    """

    def __init__(self, path: str, *, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` in a read transaction of its own (blocking: call from a thread)."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection (a later `run` opens it again)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A forked child never uses its parent's connection (SQLite forbids it).
        self._pid = os.getpid()
        conn = sqlite3.connect(
            self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA mmap_size=268435456")
        self._conn = conn
        return conn


__all__ = ["Reader"]
