"""`Database`: one SQLite connection per file and process, with an asyncio bridge.

Coroutines hand the database small functions (``fn(connection)``) and await their
results. Calls issued in the same turn of the event loop run together in one
transaction (group commit): a worker acking a hundred jobs pays for one commit.

Where a call runs was measured, not assumed. With ``synchronous=NORMAL`` a WAL commit
does no fsync and a statement takes microseconds, while handing work to a thread and
back costs a GIL hand-off each way (about 0.7 ms per call on a busy 2-core machine,
ten times the work itself). So a batch runs on the event loop itself, unless

- another process holds the write lock (the batch would have to wait): it moves to a
  dedicated database thread, which waits up to `busy_timeout` without blocking the loop;
- ``synchronous=FULL`` (every commit waits for an fsync): always on the thread;
- earlier calls are still queued on the thread (order is kept: a call never overtakes
  one issued before it), or another event loop is using the connection.

If a function fails, the batch is rolled back and each call is replayed on the thread
in a transaction of its own, so one bad call never takes another's write with it (how a
batch runs is `_batch`'s). A
caller's future resolves only after its commit, so an acknowledged enqueue is in the
file. The file is opened in WAL mode (see `_open`).

`run_now` is the worker's hot path (acks and leases): the statement runs at once in a
write transaction opened on the loop, and its result is returned before the commit,
which comes two loop turns later and carries everything issued meanwhile (the acks and
results of the jobs that just finished, the lease of the next ones): one commit and
no future per job. A crash before that commit loses only work that is done again (the
job is delivered again). Calls that cannot run so (no connection yet, the thread busy,
another process holding the lock, ``synchronous=FULL``) take the awaited path.
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
from typing import TypeVar, cast

from lexigram.contracts.tasks import BackendConnectionError
from lexigram.tasks.backends.sqlite._batch import BatchRunner
from lexigram.tasks.backends.sqlite._calls import (
    MISSED,
    BusyError,
    Call,
    Missed,
    Outcome,
    deliver,
    early_call,
    noop,
    settle,
)
from lexigram.tasks.backends.sqlite._exit import flush_at_exit
from lexigram.tasks.backends.sqlite._notify import Notifier
from lexigram.tasks.backends.sqlite._open import Checkpointer, is_busy, open_database
from lexigram.tasks.backends.sqlite._reader import Reader

T = TypeVar("T")

_MAX_BATCH = 512
_BEHIND_DELAY = 0.002  # seconds a write-behind call waits to share a commit
# Longest a transaction opened by `run_now` stays open when the loop is blocked (a handler
# that does not yield): then the watchdog thread commits it, so the write lock goes back to
# other processes and to the lease keeper's connection.
_MAX_OPEN_SECONDS = 0.05


# How long the exit hook waits for calls already handed to a database thread.
_EXIT_DRAIN_SECONDS = 10.0

logger = logging.getLogger(__name__)

# The files this process has named. A spec without a URL (``--backend sqlite``, a config
# with no url) shows no file anywhere else, so the first `Database` of each file says
# which one it is; once, not for each queue, store or reopening after a fork. Said when
# the object is built, not when the file is opened: the command line opens it inside its
# connection probe, which silences everything below ERROR.
_announced: set[str] = set()


class Database:
    """One SQLite file, served by one connection (on the event loop or its own thread).

    Args:
        path: The database file (created if missing, with its directory).
        synchronous: ``"NORMAL"`` or ``"FULL"`` (see `SQLiteOptions.synchronous`).
        busy_timeout: Seconds to wait for another process's write lock.
        allow_network_filesystem: Open a file on a network filesystem anyway.
        open_timeout: Seconds opening waits for that lock (None: `busy_timeout`).
    """

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 10.0,
        allow_network_filesystem: bool = False,
        open_timeout: float | None = None,
    ) -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self.open_timeout = open_timeout
        self.allow_network_filesystem = allow_network_filesystem
        self.notifier = Notifier(path)
        self.inline = self.synchronous != "FULL"
        self._conn: sqlite3.Connection | None = None
        self._open_error: BaseException | None = None
        self._closed = False
        self._refs = 1
        self._reader = Reader(path, busy_timeout=busy_timeout)
        self._reset()
        flush_at_exit(self)
        shown = str(Path(path).absolute())
        if shown not in _announced:
            _announced.add(shown)
            logger.info("Using the SQLite database %s.", shown)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._calls: stdqueue.SimpleQueue[list[Call] | None] = stdqueue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._conn_lock = threading.Lock()  # whoever runs statements holds it
        self._count_lock = threading.Lock()
        self._queued = 0  # calls handed to the thread and not yet settled
        self._pending: list[Call] = []  # calls of this loop turn, run together
        self._pending_loop: asyncio.AbstractEventLoop | None = None
        self._urgent = False  # a flush of the pending calls is scheduled for this turn
        # A write transaction `run_now` opened on this loop, committed a turn later.
        self._open_loop: asyncio.AbstractEventLoop | None = None
        self._done: list[Outcome] = []  # calls run in it: their outcomes wait for the commit
        self._stmt_lock = threading.RLock()  # the open transaction: the loop or the watchdog
        self._txn_gen = 0  # counts the transactions `run_now` opened
        self._watchdog: threading.Thread | None = None
        self._checkpointer = Checkpointer(self.path, writer_lock=self._conn_lock)
        self._runner = BatchRunner(self.path, self.busy_timeout, self._checkpointer, self.notifier)

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
        """Run `fn(connection)` and return its result once its transaction committed.

        Args:
            fn: The work; it must not begin or commit (the database does).
            write: Whether `fn` writes (it then runs under the write lock).
            topics: Wake-up topics published after the commit (see `Notifier`).
            what: Words for error messages ("enqueue jobs").

        Raises:
            BackendConnectionError: The file cannot be opened or written, or stayed
                locked by another process for `busy_timeout` seconds.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._add(Call(fn, write, topics, loop, future, what), loop)
        return await future

    async def read_apart(self, fn: Callable[[sqlite3.Connection], T], *, what: str) -> T:
        """Run a read that may visit many rows on a connection of its own, on a thread.

        Everything this process issued before is committed first, so the read sees it;
        the read itself never holds up the event loop or this connection's writes (see
        `Reader`). For reads whose cost grows with the queue, such as counting it.

        Raises:
            BackendConnectionError: The file cannot be opened or read.
        """
        await self.call(_nothing, write=False, what=what)  # also opens and migrates the file
        try:
            return await asyncio.to_thread(self._reader.run, fn)
        except sqlite3.Error as exc:
            msg = f"Could not {what} in the SQLite database {self.path!r}: {exc}."
            raise BackendConnectionError(msg) from exc

    def submit(
        self,
        fn: Callable[[sqlite3.Connection], object],
        *,
        topics: Sequence[str] = (),
        what: str = "write",
    ) -> None:
        """Queue a write without waiting for it (write-behind).

        Calls run in the order they were issued on the one connection, so anything
        this process does afterwards through `call` (a read, or an ack whose commit it
        awaits) sees this write, committed. A failure is logged, not raised: use it
        for state whose loss in a crash is harmless (progress, a result written before
        the job's ack).

        Raises:
            BackendConnectionError: The database is closed.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._add(Call(fn, True, topics, None, None, what), loop)  # noqa: FBT003

    def _add(self, call: Call, loop: asyncio.AbstractEventLoop | None) -> None:
        if self._closed:
            msg = f"The SQLite database {self.path!r} is closed; cannot {call.what}."
            raise BackendConnectionError(msg)
        if self._pid != os.getpid():
            # A forked child inherits the object but not the thread or a usable connection.
            self._reset()
            self._conn, self._open_error = None, None
        if self._open_loop is not None:
            with self._stmt_lock:
                if self._joined_open(call, loop):
                    return
        if self._pending:
            if loop is not None and loop is self._pending_loop:
                self._pending.append(call)
                if call.future is not None and not self._urgent:
                    self._urgent = True
                    loop.call_soon(self._flush)
                return
            self._hand_over(self._take_pending())
        if loop is not None and self.inline and self._conn is not None and not self._queued:
            self._pending = [call]
            self._pending_loop = loop
            if call.future is None:
                # Write-behind waits a moment for an awaited call (the job's ack) to
                # share its commit; each commit writes every page it touched.
                loop.call_later(_BEHIND_DELAY, self._flush)
            else:
                self._urgent = True
                loop.call_soon(self._flush)
            return
        self._hand_over([call])

    def run_now(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        topics: Sequence[str] = (),
        what: str = "write",
        replay: bool = True,
    ) -> T | Missed:
        """Run a write now, on the event loop, in a transaction committed a turn later.

        The result is returned at once, before the commit: what the call wrote is
        committed with every call of this turn and the next (acks, result writes, the
        next lease), one commit for all of them, and lost if the process dies first.
        Use it for work whose loss in a crash is harmless (an ack: the job runs again).
        Calls issued before it run first, in the same transaction.

        Returns:
            The value of `fn`, or `MISSED` when it cannot run now (no connection yet,
            calls queued on the thread, another process holds the lock, a call failed):
            then `await call(fn)` instead.

        Args:
            fn: The work, as for `call`.
            topics: Wake-up topics published after the commit.
            what: Words for error messages.
            replay: Whether to run `fn` again if the transaction has to be rolled back
                (a fenced ack may; a lease whose rows are already running may not).
        """
        with self._stmt_lock:
            loop = self._open_loop
            if loop is None:
                loop = self._open()
                if loop is None:
                    return MISSED
            elif not _running(loop):
                return MISSED
            conn = cast(sqlite3.Connection, self._conn)
            if self._pending and not self._run_pending(conn):
                return MISSED
            try:
                value = fn(conn)
            except BaseException:
                self._abort()
                return MISSED
            self._done.append((early_call(fn if replay else noop, topics, what), True, None))
            return value

    def _open(self) -> asyncio.AbstractEventLoop | None:
        """Begin a write transaction on the running loop; None when it cannot now."""
        if not self.inline or self._closed or self._queued or self._pid != os.getpid():
            return None
        conn = self._conn
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if conn is None or (self._pending and self._pending_loop is not loop):
            return None
        if not self._conn_lock.acquire(blocking=False):
            return None
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            self._conn_lock.release()
            return None
        self._open_loop = loop
        self._txn_gen += 1
        # Committed in the turn after next: the calls this turn's wake-ups make (the
        # worker's next lease) join the same commit.
        loop.call_soon(self._commit_soon, loop)
        if self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch, name="lexigram-sqlite-watchdog", daemon=True
            )
            self._watchdog.start()
        return loop

    def _commit_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.call_soon(self._commit_turn)

    def _commit_turn(self) -> None:
        if self._open_loop is not None:
            self._commit_open()
        elif self._pending:
            self._flush()  # the watchdog committed: calls queued behind it still wait

    def _watch(self) -> None:
        """Commit a transaction `run_now` left open for `_MAX_OPEN_SECONDS` (a blocked loop)."""
        seen = -1
        while not self._closed and self._pid == os.getpid():
            time.sleep(_MAX_OPEN_SECONDS)
            generation = self._txn_gen if self._open_loop is not None else -1
            if generation >= 0 and generation == seen:
                self._commit_blocked(generation)
                generation = -1
            seen = generation

    def _commit_blocked(self, generation: int) -> None:
        with self._stmt_lock:
            loop = self._open_loop
            if loop is None or self._txn_gen != generation:
                return
            self._commit_open(from_thread=True)
            if self._pending:
                with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
                    loop.call_soon_threadsafe(self._flush)

    def _run_pending(self, conn: sqlite3.Connection) -> bool:
        batch = self._take_pending()
        for call in batch:
            try:
                self._done.append((call, True, call.fn(conn)))
            except BaseException:
                self._abort(batch[batch.index(call) :])
                return False
        return True

    def _abort(self, also: Sequence[Call] = ()) -> None:
        """Roll the open transaction back and replay its calls on the thread."""
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        replay = [call for call, _, _ in self._done if call.fn is not noop]
        replay += also
        replay += self._take_pending()
        self._done = []
        self._open_loop = None
        self._conn_lock.release()
        if replay:
            self._hand_over(replay)

    def _commit_open(self, *, at_exit: bool = False, from_thread: bool = False) -> None:
        """Run the calls that joined the open transaction, and commit it.

        From the watchdog (`from_thread`) the calls still queued are left to the loop's
        flush, and outcomes are handed to the loop.
        """
        with self._stmt_lock:
            loop = self._open_loop
            if loop is None:
                return
            conn = cast(sqlite3.Connection, self._conn)
            if not from_thread and self._pending and not self._run_pending(conn):
                return
            try:
                conn.execute("COMMIT")
            except sqlite3.Error:
                self._abort()
                return
            done, self._done = self._done, []
            self._open_loop = None
            self._conn_lock.release()
        self._checkpointer.nudge()
        self._runner.publish([call for call, _, _ in done])
        if at_exit:
            # Only write-behind failures are reported: an awaited call's loop is gone.
            settle([out for out in done if out[0].future is None])
        elif from_thread:
            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
                loop.call_soon_threadsafe(settle, done)
        else:
            settle(done)

    def _joined_open(self, call: Call, loop: asyncio.AbstractEventLoop | None) -> bool:
        """Queue `call` behind the open transaction; False once that is committed."""
        opened = self._open_loop
        if opened is None:
            return False  # the watchdog committed it meanwhile
        if loop is opened:
            self._pending.append(call)  # runs in the open transaction, at its commit
            self._pending_loop = opened
            return True
        if opened.is_running():
            self._hand_over([call])  # waits on the thread for the commit's lock release
            return True
        # Its loop stopped before the commit came round: nobody else will commit it.
        self._commit_open(at_exit=opened.is_closed())
        return False

    def _take_pending(self) -> list[Call]:
        batch, self._pending, self._pending_loop = self._pending, [], None
        self._urgent = False
        return batch

    def _flush(self) -> None:
        """Run this loop turn's calls on the event loop, or hand them to the thread."""
        if self._open_loop is not None:
            return  # the pending calls joined the open transaction
        batch = self._take_pending()
        if not batch:
            return
        conn = self._conn
        if conn is None or self._queued or not self._conn_lock.acquire(blocking=False):
            self._hand_over(batch)
            return
        try:
            outcomes = self._runner.attempt(conn, batch)
        except BusyError:
            outcomes = None
        except sqlite3.Error as exc:
            outcomes = exc
        finally:
            self._conn_lock.release()
        if outcomes is None or isinstance(outcomes, BaseException):
            self._hand_over(batch)  # locked by another process, or a call failed
        else:
            settle(outcomes)

    def flush_now(self) -> None:
        """At exit: commit the calls waiting for this loop turn and those handed to the thread.

        The waiting calls run on the calling thread when the connection is free. The
        database thread is a daemon, which the interpreter would stop with calls still in
        its queue, so this waits (bounded) until it has committed them.
        """
        if self._open_loop is not None and self._pid == os.getpid():
            self._commit_open(at_exit=True)
        batch = self._take_pending()
        conn = self._conn
        if conn is None or self._pid != os.getpid():
            return
        if batch:
            if self._queued or not self._conn_lock.acquire(blocking=False):
                self._hand_over(batch)
            else:
                try:
                    outcomes = self._runner.patiently(conn, batch)
                finally:
                    self._conn_lock.release()
                # Only write-behind failures are reported: an awaited call's loop is gone.
                settle([out for out in outcomes if out[0].future is None])
        self._wait_until_drained(_EXIT_DRAIN_SECONDS)

    def _wait_until_drained(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._queued and time.monotonic() < deadline:
            time.sleep(0.005)

    def _hand_over(self, batch: list[Call]) -> None:
        with self._count_lock:
            self._queued += len(batch)
        self._ensure_thread()
        self._calls.put(batch)

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._serve, name="lexigram-sqlite", daemon=True)
                thread.start()
                self._thread = thread

    # -- running a batch --------------------------------------------------------------

    def _serve(self) -> None:
        calls = self._calls
        while True:
            first = calls.get()
            if first is None:
                break
            batch = list(first)
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    more = calls.get_nowait()
                except stdqueue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.extend(more)
            with self._conn_lock:
                try:
                    conn = self._connection()
                except BaseException as exc:  # every caller gets the error
                    outcomes: list[Outcome] = [(call, False, exc) for call in batch]
                else:
                    outcomes = self._runner.patiently(conn, batch)
            # Counted off before the outcomes are handed back: the batch is committed, and
            # a caller that goes on at once must find the thread idle, or its next call
            # (and every one after) would queue here too, behind nothing.
            with self._count_lock:
                self._queued -= len(batch)
            deliver(outcomes)
            if stop:
                break
        with self._conn_lock:
            last, self._conn = self._conn, None
            if last is not None:
                with contextlib.suppress(sqlite3.Error):
                    last.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self._open_error is not None:
            raise self._open_error
        try:
            self._conn = open_database(
                self.path,
                synchronous=self.synchronous,
                busy_timeout=self.busy_timeout,
                allow_network_filesystem=self.allow_network_filesystem,
                open_timeout=self.open_timeout,
            )
        except BaseException as exc:
            # Another process's lock is let go sooner or later: the next call tries again.
            if not is_busy(exc.__cause__):
                self._open_error = exc
            raise
        return self._conn

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
        if self._open_loop is not None:
            self._commit_open()
        if self._pending:
            self._hand_over(self._take_pending())
        self._closed = True
        if self._pid == os.getpid():
            if self._thread is None and self._conn is not None:
                self._ensure_thread()  # the thread closes the connection
            thread = self._thread
            if thread is not None:
                self._calls.put(None)
                await asyncio.get_running_loop().run_in_executor(None, thread.join, 5.0)
        self._thread = None
        self._checkpointer.stop()
        self._reader.close()
        self.notifier.close()


def _nothing(conn: sqlite3.Connection) -> None:
    """A call whose only effect is to follow, and so commit, the calls issued before it."""


def _running(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether `loop` is the one running in this thread."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
