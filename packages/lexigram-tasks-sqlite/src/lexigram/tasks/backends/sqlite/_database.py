"""`Database`: one SQLite connection on a dedicated thread, with an asyncio bridge.

``sqlite3`` blocks, so every statement runs on one thread per `Database`; coroutines
hand it small functions and await their results. Calls that arrive while the thread
is busy are run together in one transaction (group commit): a worker acking a hundred
jobs pays for one commit, not a hundred. If a function fails, the batch is rolled back
and each call is replayed in a transaction of its own, so one bad call never takes
another's write with it. A caller's future resolves only after its commit, so an
acknowledged enqueue or ack is in the file.

The file is opened in WAL mode (readers never block the writer, and a process killed
mid-write leaves a file that opens clean), with ``synchronous`` NORMAL or FULL and a
busy timeout for the write lock other processes hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue as stdqueue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from lexigram.contracts.tasks import BackendConnectionError, TaskConfigurationError
from lexigram.tasks.backends.sqlite._netfs import network_filesystem
from lexigram.tasks.backends.sqlite._notify import Notifier
from lexigram.tasks.backends.sqlite._schema import migrate

logger = logging.getLogger(__name__)

T = TypeVar("T")

Fn = Callable[[sqlite3.Connection], Any]

_MAX_BATCH = 512


class _Call:
    __slots__ = ("fn", "future", "loop", "topics", "what", "write")

    def __init__(  # noqa: PLR0917 - a private record built in one place
        self,
        fn: Fn,
        write: bool,
        topics: Sequence[str],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        what: str,
    ) -> None:
        self.fn = fn
        self.write = write
        self.topics = topics
        self.loop = loop
        self.future = future
        self.what = what


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in outcomes:
        if future.done():
            continue  # the caller was cancelled; the work is done anyway
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class Database:
    """One SQLite file, served by one connection on its own thread.

    Args:
        path: The database file (created if missing, with its directory).
        synchronous: ``"NORMAL"`` or ``"FULL"`` (see `SQLiteOptions.synchronous`).
        busy_timeout: Seconds to wait for another process's write lock.
        allow_network_filesystem: Open a file on a network filesystem anyway.
    """

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 10.0,
        allow_network_filesystem: bool = False,
    ) -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self.allow_network_filesystem = allow_network_filesystem
        self.notifier = Notifier(path)
        self._calls: stdqueue.SimpleQueue[_Call | None] = stdqueue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._open_error: BaseException | None = None
        self._closed = False
        self._refs = 1
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"Database(path={self.path!r}, synchronous={self.synchronous!r})"

    # -- calling ----------------------------------------------------------------------

    async def call(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        write: bool = True,
        topics: Sequence[str] = (),
        what: str = "run a statement",
    ) -> T:
        """Run `fn(connection)` on the database thread and return its result.

        Args:
            fn: The work; it must not commit or begin (the thread does).
            write: Whether `fn` writes (it then runs under the write lock).
            topics: Wake-up topics published after the commit (see `Notifier`).
            what: Words for error messages ("enqueue jobs").

        Raises:
            BackendConnectionError: The file cannot be opened or written, or stayed
                locked by another process for `busy_timeout` seconds.
        """
        if self._closed:
            msg = f"The SQLite database {self.path!r} is closed; cannot {what}."
            raise BackendConnectionError(msg)
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put(_Call(fn, write, topics, loop, future, what))
        return await future

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():
            # A forked child inherits the object but not the thread or a usable connection.
            self._pid = os.getpid()
            self._thread, self._conn, self._open_error = None, None, None
            self._calls = stdqueue.SimpleQueue()
            self._start_lock = threading.Lock()
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._serve, name="lexigram-sqlite", daemon=True)
                thread.start()
                self._thread = thread

    # -- the database thread ----------------------------------------------------------

    def _serve(self) -> None:
        calls = self._calls
        while True:
            first = calls.get()
            if first is None:
                break
            batch = [first]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    more = calls.get_nowait()
                except stdqueue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._run_batch(batch)
            if stop:
                break
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self._open_error is not None:
            raise self._open_error
        try:
            self._conn = self._open()
        except BaseException as exc:
            self._open_error = exc
            raise
        return self._conn

    def _open(self) -> sqlite3.Connection:
        directory = Path(self.path).absolute().parent
        fs = network_filesystem(str(directory))
        if fs is not None and not self.allow_network_filesystem:
            msg = (
                f"The SQLite database {self.path!r} is on a network filesystem ({fs}); SQLite's "
                "locks are not reliable there and two hosts sharing the file can corrupt it. "
                "Put the file on a local disk, or set the option allow_network_filesystem=true "
                "if only this host ever opens it."
            )
            raise TaskConfigurationError(msg)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            msg = (
                f"Cannot open the SQLite database {self.path!r} ({exc}). Check that the "
                "directory exists and is writable, or pass another sqlite:/// URL."
            )
            raise BackendConnectionError(msg) from exc
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                applied = self._prepare(conn)
            except sqlite3.OperationalError as exc:
                # Switching a new file to WAL while another process opens it can fail
                # with "locked" at once, without SQLite's busy handler: try again.
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                conn.close()
                raise self._error(exc, "open the database") from exc
            except sqlite3.Error as exc:
                conn.close()
                raise self._error(exc, "open the database") from exc
            except RuntimeError as exc:
                conn.close()
                raise BackendConnectionError(str(exc)) from exc
            break
        if applied:
            logger.info("SQLite database %s migrated to schema version %d.", self.path, applied[-1])
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> list[int]:
        """Set the pragmas and apply pending migrations; return the versions applied."""
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logger.warning(
                "SQLite database %s did not switch to WAL mode (%s); readers and the "
                "writer will block each other.",
                self.path,
                mode,
            )
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("BEGIN IMMEDIATE")
        try:
            applied = migrate(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return applied

    def _run_batch(self, batch: list[_Call]) -> None:
        outcomes: list[tuple[_Call, bool, Any]] = []
        try:
            conn = self._connection()
        except BaseException as exc:
            self._deliver([(call, False, exc) for call in batch])
            return
        writes = any(call.write for call in batch)
        if not writes:
            self._deliver([self._run_one(conn, call, transaction=False) for call in batch])
            return
        try:
            self._begin(conn)
        except sqlite3.Error as exc:
            error = self._error(exc, batch[0].what)
            self._deliver([(call, False, error) for call in batch])
            return
        failed = False
        for call in batch:
            try:
                outcomes.append((call, True, call.fn(conn)))
            except BaseException:
                failed = True
                break
        if not failed:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error:
                failed = True
        if failed:
            # Replay each call on its own so that only the failing one fails.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            outcomes = [self._run_one(conn, call, transaction=call.write) for call in batch]
        else:
            self._publish(batch)
        self._deliver(outcomes)

    def _run_one(self, conn: sqlite3.Connection, call: _Call, *, transaction: bool) -> Any:
        try:
            if transaction:
                self._begin(conn)
            try:
                value = call.fn(conn)
            except BaseException:
                if transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            if transaction:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if transaction and conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return (call, False, self._error(exc, call.what))
        except BaseException as exc:
            return (call, False, exc)
        self._publish([call])
        return (call, True, value)

    def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, retrying a "locked" that SQLite returns without waiting.

        The busy handler covers the usual wait for another writer; a few situations
        (another connection recovering the WAL, a journal-mode change) fail at once.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.005)
                    continue
                raise
            return

    def _publish(self, batch: list[_Call]) -> None:
        topics = [topic for call in batch for topic in call.topics]
        if topics:
            try:
                self.notifier.publish(topics)
            except OSError:
                logger.debug("Publishing wake-ups failed; waiters fall back to polling.")

    def _error(self, exc: sqlite3.Error, what: str) -> BackendConnectionError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            msg = (
                f"Could not {what}: the SQLite database {self.path!r} stayed locked by another "
                f"process for {self.busy_timeout:g} s. Raise the busy_timeout option, or find "
                "the process holding a long write transaction."
            )
        else:
            msg = f"Could not {what} on the SQLite database {self.path!r}: {text}."
        return BackendConnectionError(msg)

    @staticmethod
    def _deliver(outcomes: list[tuple[_Call, bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for call, ok, value in outcomes:
            by_loop.setdefault(call.loop, []).append((call.future, ok, value))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
                loop.call_soon_threadsafe(_settle, settled)

    # -- lifecycle --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether `close` has released the last reference."""
        return self._closed

    def retain(self) -> Database:
        """Take one more reference: `close` then really closes at the last release."""
        self._refs += 1
        return self

    async def close(self) -> None:
        """Release one reference; the last one finishes queued calls and closes the file.

        Safe to call more often than references were taken.
        """
        if self._closed:
            return
        self._refs -= 1
        if self._refs > 0:
            return
        self._closed = True
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            self._calls.put(None)
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 5.0)
        self._thread = None
        self.notifier.close()


def data_version(conn: sqlite3.Connection) -> int:
    """``PRAGMA data_version``: changes whenever another connection commits."""
    return int(cast(tuple[int], conn.execute("PRAGMA data_version").fetchone())[0])
