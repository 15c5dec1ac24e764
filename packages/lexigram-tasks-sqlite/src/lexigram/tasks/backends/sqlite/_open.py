"""Opening a database file: the network-filesystem check, pragmas and migrations."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from lexigram.contracts.tasks import BackendConnectionError, TaskConfigurationError
from lexigram.tasks.backends.sqlite._netfs import network_filesystem
from lexigram.tasks.backends.sqlite._schema import SCHEMA_VERSION, migrate, recorded_version

logger = logging.getLogger(__name__)


def is_busy(exc: BaseException | None) -> bool:
    """Whether `exc` is SQLite's "another connection holds the lock" (worth retrying)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc)
    return "locked" in text or "busy" in text


def busy_error(path: str, what: str, busy_timeout: float) -> BackendConnectionError:
    """The error of a call that found the file locked for `busy_timeout` seconds."""
    msg = (
        f"Could not {what}: the SQLite database {path!r} stayed locked by another process "
        f"for {busy_timeout:g} s. Raise the busy_timeout option, or find the process holding "
        "a long write transaction."
    )
    return BackendConnectionError(msg)


def open_database(
    path: str,
    *,
    synchronous: str,
    busy_timeout: float,
    allow_network_filesystem: bool,
    open_timeout: float | None = None,
) -> sqlite3.Connection:
    """Open `path` in WAL mode, set the pragmas and apply pending migrations.

    The connection has no busy timeout of its own (``busy_timeout=0``): the caller
    waits for another process's lock itself, so that a call made on the event loop
    can give up at once and move to the database thread instead of blocking the loop.
    Opening waits for another process's write lock (needed only to create the tables
    or migrate them) up to `open_timeout` seconds, `busy_timeout` when None.

    Raises:
        TaskConfigurationError: The file is on a network filesystem.
        BackendConnectionError: The file cannot be opened, migrated, or stayed locked.
    """
    directory = Path(path).absolute().parent
    fs = network_filesystem(str(directory))
    if fs is not None and not allow_network_filesystem:
        msg = (
            f"The SQLite database {path!r} is on a network filesystem ({fs}); SQLite's "
            "locks are not reliable there and two hosts sharing the file can corrupt it. "
            "Put the file on a local disk, or set the option allow_network_filesystem=true "
            "if only this host ever opens it."
        )
        raise TaskConfigurationError(msg)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        msg = (
            f"Cannot open the SQLite database {path!r} ({exc}). Check that the directory "
            "exists and is writable, or pass another sqlite:/// URL."
        )
        raise BackendConnectionError(msg) from exc
    wait = busy_timeout if open_timeout is None else open_timeout
    deadline = time.monotonic() + wait
    while True:
        try:
            applied = _prepare(conn, path, synchronous)
        except sqlite3.Error as exc:
            if is_busy(exc) and time.monotonic() < deadline:
                time.sleep(0.01)  # another process is creating or migrating the file
                continue
            if is_busy(exc):
                found = _version_or_none(conn)
                conn.close()
                raise _locked_at_open(path, found, wait) from exc
            conn.close()
            msg = (
                f"Could not open the SQLite database {path!r}: {exc}. Point the URL at a "
                "lexigram-tasks database, or at a path that does not exist yet (it is "
                "created there)."
            )
            raise BackendConnectionError(msg) from exc
        except RuntimeError as exc:
            conn.close()
            raise BackendConnectionError(str(exc)) from exc
        break
    if applied:
        logger.info("SQLite database %s migrated to schema version %d.", path, applied[-1])
    return conn


def _version_or_none(conn: sqlite3.Connection) -> int | None:
    try:
        return recorded_version(conn)
    except sqlite3.Error:  # not even readable now (a rollback-journal file being written)
        return None


def _locked_at_open(path: str, found: int | None, waited: float) -> BackendConnectionError:
    """The error of an open that needed the write lock and did not get it in time."""
    if found is None:
        why = "to create its tables"
    elif found < SCHEMA_VERSION:
        why = f"to migrate its tables from schema version {found} to {SCHEMA_VERSION}"
    else:  # up to date: only a file not in WAL mode yet needs the lock, to switch
        why = "to switch it to WAL mode"
    msg = (
        f"Could not open the SQLite database {path!r}: it needs the write lock {why}, and "
        f"another process held a write transaction on it for {waited:g} s. Find the process "
        "holding the long write transaction, or raise the open_timeout option "
        "(--connect-timeout on the command line)."
    )
    return BackendConnectionError(msg, details={"path": path})


def _prepare(conn: sqlite3.Connection, path: str, synchronous: str) -> list[int]:
    """Set the pragmas and apply pending migrations; return the versions applied."""
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        logger.warning(
            "SQLite database %s did not switch to WAL mode (%s); readers and the writer "
            "will block each other.",
            path,
            mode,
        )
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=0")
    conn.execute("PRAGMA foreign_keys=OFF")
    # Checkpoints (copying the WAL into the file, with an fsync) run on a thread of
    # their own (`Checkpointer`), not inside a commit on the event loop.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    # A 16 MB page cache and memory-mapped reads: W2 drained about 20 % faster than with
    # SQLite's 2 MB cache and read() per page (benchmarks/README.md).
    conn.execute("PRAGMA cache_size=-16000")
    conn.execute("PRAGMA mmap_size=268435456")
    if recorded_version(conn) == SCHEMA_VERSION:
        # Up to date: nothing to write, so no write lock to wait for (a WAL reader
        # never needs one). Another process's long write transaction must not keep
        # `inspect`, `job status` or a new worker from opening the file.
        return []
    conn.execute("BEGIN IMMEDIATE")
    try:
        applied = migrate(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return applied


class Checkpointer:
    """Copies the WAL back into the database file on a thread of its own.

    The connections of `Database` turn SQLite's automatic checkpoint off, because it
    runs inside the commit that crosses the threshold, on the event loop, fsync
    included. `nudge` is called after commits; every `every` of them this thread runs
    a PASSIVE checkpoint on its own connection (never blocking writers or readers).

    A PASSIVE checkpoint copies the frames committed before it started; a writer that
    commits all along stays ahead of it, and SQLite starts the WAL over only once every
    frame is copied, so a busy worker's WAL grew without bound (460 MB for a
    30,000-job drain) and every commit appended to a growing file. So the checkpoint
    then copies the last frames while it holds `writer_lock` (this process's writes
    wait a moment): the next write transaction starts the WAL over.
    """

    def __init__(
        self, path: str, every: int = 200, writer_lock: threading.Lock | None = None
    ) -> None:
        self._path = path
        self._every = every
        self._writer_lock = writer_lock
        self._commits = 0
        self._wanted = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def nudge(self) -> None:
        """Count one commit; wake the thread when a checkpoint is due."""
        self._commits += 1
        if self._commits >= self._every:
            self._commits = 0
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="lexigram-sqlite-checkpoint", daemon=True
                )
                self._thread.start()
            self._wanted.set()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=0, isolation_level=None)
        except sqlite3.Error:
            logger.warning("Cannot open %s to checkpoint its WAL.", self._path, exc_info=True)
            return
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._stopped:
                    return
                try:
                    self._checkpoint(conn)
                except sqlite3.Error as exc:  # busy: another process checkpoints now
                    logger.debug("WAL checkpoint of %s skipped: %s", self._path, exc)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        lock = self._writer_lock
        if lock is None or self._stopped:
            return
        with lock:  # the frames committed meanwhile: few, so the pause is short
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def stop(self) -> None:
        """Stop the thread (the last connection to close checkpoints the WAL anyway)."""
        self._stopped = True
        self._wanted.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5.0)
