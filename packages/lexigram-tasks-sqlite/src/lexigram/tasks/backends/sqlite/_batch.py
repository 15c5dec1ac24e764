"""Running a batch of calls on the connection: one transaction, one outcome per call.

A batch that only reads runs without a transaction; one that writes runs between
``BEGIN IMMEDIATE`` and ``COMMIT``, and its wake-up topics are published after the
commit. On the database thread a batch waits out another process's write lock (up to
`busy_timeout`), and a batch in which a call failed is replayed call by call, so only
the failing call fails.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time

from lexigram.contracts.tasks import BackendConnectionError
from lexigram.tasks.backends.sqlite._calls import BusyError, Call, Outcome
from lexigram.tasks.backends.sqlite._notify import Notifier
from lexigram.tasks.backends.sqlite._open import Checkpointer, busy_error, is_busy

# Its records keep the logger of `_database`, where this code was before, so that logging
# configurations naming that logger still see them.
logger = logging.getLogger("lexigram.tasks.backends.sqlite._database")

_BUSY_SLEEP = (0.001, 0.002, 0.005, 0.01, 0.02)  # back-off while another process writes


class BatchRunner:
    """Runs the batches of one `Database` on its connection.

    Args:
        path: The database file (for error messages).
        busy_timeout: Seconds a batch waits for another process's write lock.
        checkpointer: Told of every commit.
        notifier: Publishes the wake-up topics of committed calls.
    """

    def __init__(
        self, path: str, busy_timeout: float, checkpointer: Checkpointer, notifier: Notifier
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._checkpointer = checkpointer
        self._notifier = notifier

    def attempt(self, conn: sqlite3.Connection, batch: list[Call]) -> list[Outcome] | BaseException:
        """Run `batch` once: its outcomes, or the error of a failed call (nothing committed).

        Raises:
            BusyError: Another connection holds the lock (nothing committed).
        """
        if not any(call.write for call in batch):
            return self._reads(conn, batch)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if is_busy(exc):
                raise BusyError from exc
            raise
        try:
            outcomes: list[Outcome] = [(call, True, call.fn(conn)) for call in batch]
            conn.execute("COMMIT")
            self._checkpointer.nudge()
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if is_busy(exc):
                raise BusyError from exc
            return exc
        self.publish(batch)
        return outcomes

    def _reads(self, conn: sqlite3.Connection, batch: list[Call]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for call in batch:
            try:
                outcomes.append((call, True, call.fn(conn)))
            except sqlite3.Error as exc:
                if is_busy(exc):
                    raise BusyError from exc
                outcomes.append((call, False, self.error(exc, call.what)))
            except Exception as exc:  # the caller gets its own error
                outcomes.append((call, False, exc))
        return outcomes

    def patiently(self, conn: sqlite3.Connection, batch: list[Call]) -> list[Outcome]:
        """Run `batch` on the thread, waiting out another process's lock; never raises."""
        deadline = time.monotonic() + self.busy_timeout
        tries = 0
        while True:
            try:
                outcomes = self.attempt(conn, batch)
            except BusyError as exc:
                if time.monotonic() < deadline:
                    time.sleep(_BUSY_SLEEP[min(tries, len(_BUSY_SLEEP) - 1)])
                    tries += 1
                    continue
                busy = busy_error(self.path, batch[0].what, self.busy_timeout)
                busy.__cause__ = exc.__cause__
                return [(call, False, busy) for call in batch]
            except sqlite3.Error as exc:
                return [(call, False, self.error(exc, call.what)) for call in batch]
            if not isinstance(outcomes, BaseException):
                return outcomes
            if len(batch) == 1:
                error = outcomes
                if isinstance(error, sqlite3.Error):
                    error = self.error(error, batch[0].what)
                return [(batch[0], False, error)]
            # Replay each call on its own so that only the failing one fails.
            return [out for call in batch for out in self.patiently(conn, [call])]

    def publish(self, batch: list[Call]) -> None:
        """Publish the wake-up topics of a committed batch (see `Notifier`)."""
        topics = [topic for call in batch for topic in call.topics]
        if topics:
            try:
                self._notifier.publish(topics)
            except OSError:
                logger.debug("Publishing wake-ups failed; waiters fall back to polling.")

    def error(self, exc: sqlite3.Error, what: str) -> BackendConnectionError:
        """The error a caller gets for `exc`, raised while doing `what`."""
        if is_busy(exc):
            return busy_error(self.path, what, self.busy_timeout)
        msg = f"Could not {what} on the SQLite database {self.path!r}: {exc}."
        return BackendConnectionError(msg)
