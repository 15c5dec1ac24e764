"""Shared plumbing of the SQLite stores: the database they run on, JSON, waiting."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any

from lexigram.tasks.backends.sqlite._database import Database
from lexigram.tasks.backends.sqlite._options import SQLiteOptions, database_path


def loads(raw: str | bytes) -> Any:
    """Decode JSON written by `dumps`."""
    return json.loads(raw)


def expiry(ttl: float | None, now: float | None = None) -> float:
    """Epoch seconds at which something stored now with `ttl` expires (far future for none)."""
    if ttl is None or ttl <= 0:
        return 1e18
    return (time.time() if now is None else now) + ttl


class Purger:
    """Decides when a store deletes expired rows, in bounded chunks.

    A purge runs at most every `every` seconds and deletes at most `chunk` rows, so no
    single write holds the event loop long; while a purge deletes a full chunk (the
    store is behind), the next write purges again, until it has caught up.
    """

    def __init__(self, every: float = 1.0, chunk: int = 2000) -> None:
        self.chunk = chunk
        self._every = every
        self._at = 0.0
        self._behind = False

    def due(self, now: float) -> bool:
        """Whether the write made at `now` should purge (and note that it does)."""
        if self._behind or now - self._at >= self._every:
            self._at = now
            return True
        return False

    def done(self, deleted: int) -> None:
        """Record how many rows the purge deleted."""
        self._behind = deleted >= self.chunk

    def after_write(self, conn: sqlite3.Connection, table: str, key: str = "job_id") -> None:
        """Delete a chunk of `table`'s expired rows if a purge is due (a write just ran).

        `table` is one of the stores' own, keyed by its column `key` with an
        ``expires_at`` index; call it on the database thread, in the write's transaction.
        """
        now = time.time()
        if self.due(now):
            cur = conn.execute(
                f"DELETE FROM {table} WHERE {key} IN "  # noqa: S608 - the stores' own tables
                f"(SELECT {key} FROM {table} WHERE expires_at <= ? LIMIT ?)",
                (now, self.chunk),
            )
            self.done(cur.rowcount)


class SQLiteStore:
    """Base of every SQLite store: one `Database` (shared or owned).

    Args:
        path: The database file (or a ``sqlite:///`` URL), used when `database` is not
            given.
        url: A ``sqlite:///`` URL instead of `path`.
        options: Backend options (synchronous, busy timeout, poll interval...).
        database: A shared `Database` (the backend object passes the queue's), which
            `close` leaves open unless `close_database` (the backend object passes a
            reference taken with `Database.retain` for each object it builds).
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        url: str | None = None,
        options: SQLiteOptions | None = None,
        database: Database | None = None,
        close_database: bool = False,
    ) -> None:
        self.options = options or SQLiteOptions()
        self._owns_db = database is None or close_database
        if database is None:
            database = Database(
                database_path(path, url, type(self).__name__),
                synchronous=self.options.synchronous,
                busy_timeout=self.options.busy_timeout,
                allow_network_filesystem=self.options.allow_network_filesystem,
                open_timeout=self.options.open_timeout,
            )
        self._db = database

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self._db.path!r})"

    @property
    def database(self) -> Database:
        """The `Database` this store runs on."""
        return self._db

    async def close(self) -> None:
        """Close the database if this store opened it; safe to call twice."""
        if self._owns_db:
            await self._db.close()


class Wakeup:
    """An asyncio event set from any thread when one of its topics is published (any process).

    Use as a context manager around a check-then-wait loop: subscribe first, then
    read, then `wait`, so that no publication can fall between the read and the wait.
    """

    def __init__(self, db: Database, *topics: str) -> None:
        self._db = db
        self._topics = topics
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def _callback(self) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._event.set)

    def __enter__(self) -> Wakeup:
        for topic in self._topics:
            self._db.notifier.subscribe(topic, self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        for topic in self._topics:
            self._db.notifier.unsubscribe(topic, self._callback)

    async def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for a publication; True if one arrived (and reset)."""
        if not self._event.is_set():
            try:
                async with asyncio.timeout(max(0.0, seconds)):
                    await self._event.wait()
            except TimeoutError:
                return False
        self._event.clear()
        return True
