"""Options of the SQLite backend and the ``sqlite:///`` URL.

The URL follows the convention SQLAlchemy made common: ``sqlite:///tasks.db`` is a path
relative to the working directory (three slashes), ``sqlite:////var/lib/app/tasks.db``
an absolute one (four). ``:memory:`` is refused: a queue another process cannot open is
what the ``memory`` backend already is.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from lexigram.contracts.tasks import BackendConnectionError, TaskConfigurationError, mask_url

DEFAULT_FILENAME = "lexigram-tasks.db"
"""The database file used when no URL is given (in the working directory)."""

DEFAULT_PATH_ENV = "LEXIGRAM_TASKS_DB"
"""Environment variable that overrides the default database file."""

Synchronous = Literal["NORMAL", "FULL"]


@dataclass(frozen=True, slots=True)
class SQLiteOptions:
    """What ``TaskBackendSpec.options`` may carry for the ``sqlite`` backend.

    Attributes:
        visibility_timeout: Lease length in seconds of every delivery.
        synchronous: ``NORMAL`` (default): in WAL mode a commit is durable against a crash
            of the process, but a power loss or OS crash may lose the last transactions
            (never corrupts the file). ``FULL``: every commit is fsynced before it returns,
            so an acknowledged enqueue or ack survives a power loss; writes are slower.
        busy_timeout: Seconds a writer waits for another process's write lock before the
            call fails with `BackendConnectionError`.
        open_timeout: Seconds opening the file waits for another process's write lock,
            which it needs only to create the tables or migrate them (None: as long as
            `busy_timeout`). The command line's ``--connect-timeout`` sets it, so that a
            command gives up with this backend's message rather than a generic one.
        poll_interval: Upper bound in seconds on how long an idle consumer waits without
            checking the file (``PRAGMA data_version``) when no wake-up datagram arrived;
            a safety net only: enqueues wake consumers through a notification socket.
        idempotency_ttl: Seconds an idempotency key keeps pointing at its first job.
        result_ttl: Seconds a stored job result is kept.
        progress_ttl: Seconds a progress entry is kept after its last change.
        dlq_max_entries: Most dead-letter records kept (oldest dropped first; 0 = no cap).
        allow_network_filesystem: Open a database on NFS/SMB/... anyway. SQLite's locks
            are not reliable there: two hosts sharing the file can corrupt it.
        must_exist: Refuse a database file that does not exist instead of creating it
            (and its directory). The command line's read-only commands (``inspect``,
            ``dlq``, ``job``) set it, so that a mistyped path fails instead of showing
            a new, empty queue.
    """

    visibility_timeout: float = 30.0
    synchronous: Synchronous = "NORMAL"
    busy_timeout: float = 10.0
    open_timeout: float | None = None
    poll_interval: float = 1.0
    idempotency_ttl: float = 86400.0
    result_ttl: float = 3600.0
    progress_ttl: float = 86400.0
    dlq_max_entries: int = 100_000
    allow_network_filesystem: bool = False
    must_exist: bool = False

    def __post_init__(self) -> None:
        # Out of range, they failed later and elsewhere: a negative lease as "a fault of
        # the backend", a negative key TTL taken without a word.
        for name in ("visibility_timeout", "poll_interval"):
            _check_seconds(name, getattr(self, name), positive=True)
        for name in ("busy_timeout", "idempotency_ttl", "result_ttl", "progress_ttl"):
            _check_seconds(name, getattr(self, name), positive=False)
        if self.open_timeout is not None:
            _check_seconds("open_timeout", self.open_timeout, positive=False)
        if self.dlq_max_entries < 0:
            msg = (
                f"sqlite backend option dlq_max_entries={self.dlq_max_entries!r} is negative. "
                "Set a number of records, or 0 for no cap."
            )
            raise TaskConfigurationError(msg, details={"option": "dlq_max_entries"})


def _check_seconds(name: str, value: float, *, positive: bool) -> None:
    low_ok = value > 0 if positive else value >= 0
    if low_ok and math.isfinite(value):
        return
    wanted = "a positive" if positive else "a non-negative"
    msg = (
        f"sqlite backend option {name}={value!r} is not {wanted}, finite number of seconds. "
        f"Set options.{name} to one, or leave it out for the default."
    )
    raise TaskConfigurationError(msg, details={"option": name})


def default_path() -> str:
    """The database file used when nothing is configured.

    ``$LEXIGRAM_TASKS_DB`` when set, else ``lexigram-tasks.db`` in the working
    directory, so a worker and a producer started in the same directory share it.
    """
    return os.environ.get(DEFAULT_PATH_ENV) or DEFAULT_FILENAME


def path_from_url(url: str | None) -> str:
    """Return the database file a ``sqlite:///`` URL names (the default path for None).

    Raises:
        TaskConfigurationError: Not a ``sqlite:`` URL, a host part, a query string, a
            directory, or ``:memory:``.
    """
    if url is None or not url.strip():
        return default_path()
    text = url.strip()
    parts = urlsplit(text)
    shown = mask_url(text)
    if parts.scheme.lower() != "sqlite":
        msg = (
            f"SQLite backend URL {shown!r} does not start with sqlite://. "
            "Use sqlite:///relative/tasks.db or sqlite:////absolute/path/tasks.db."
        )
        raise TaskConfigurationError(msg, details={"url": shown})
    if parts.netloc:
        msg = (
            f"SQLite backend URL {shown!r} names a host or credentials after sqlite://; SQLite "
            "opens a local file. Use sqlite:///relative/tasks.db or "
            "sqlite:////absolute/path/tasks.db."
        )
        raise TaskConfigurationError(msg, details={"url": shown})
    if parts.query or parts.fragment:
        # Read as part of the path they were silently dropped: `?mode=ro` opened the
        # file for writing all the same.
        msg = (
            f"SQLite backend URL {shown!r} has a query string or fragment, which the "
            "backend does not read. Give the file alone (sqlite:///tasks.db) and its "
            "settings as the backend's options (synchronous, busy_timeout, ...)."
        )
        raise TaskConfigurationError(msg, details={"url": shown})
    path = unquote(parts.path)
    if path.startswith("/"):
        path = path[1:]  # sqlite:///x.db -> "x.db"; sqlite:////abs/x.db -> "/abs/x.db"
    if not path:
        return default_path()
    if path.endswith("/"):
        msg = (
            f"SQLite backend URL {shown!r} names a directory, not a file. Name the "
            f"database file in it, e.g. sqlite:///{path}tasks.db."
        )
        raise TaskConfigurationError(msg, details={"url": shown})
    if path == ":memory:" or path.startswith("file::memory:"):
        msg = (
            f"SQLite backend URL {shown!r} asks for an in-memory database, which no other "
            "process can open. Use --backend memory for a one-process queue, or a file "
            "such as sqlite:///tasks.db."
        )
        raise TaskConfigurationError(msg, details={"url": shown})
    return path


def database_path(path: str | None, url: str | None, owner: str) -> str:
    """The database file of a queue or store given a file path, a URL, or neither.

    `owner` names the queue or store class in messages. A ``sqlite:`` URL passed as
    the path is read as the URL; any other URL there is refused, not opened as a file
    named after it (``redis://x`` would make a directory ``redis:`` holding a file ``x``).

    Raises:
        TaskConfigurationError: Both are given, the path is a URL of another scheme, or
            the URL is not usable (see `path_from_url`).
    """
    if path is not None and url is not None:
        msg = f"{owner} got both a path and url=. Pass one of them."
        raise TaskConfigurationError(msg)
    if path is None:
        return path_from_url(url)
    if "://" in path:
        if urlsplit(path.strip()).scheme.lower() == "sqlite":
            return path_from_url(path)
        msg = (
            f"{owner} path {mask_url(path)!r} is a URL, not a file. Pass a file path "
            "such as tasks.db, or url='sqlite:///tasks.db'."
        )
        raise TaskConfigurationError(msg)
    return path


def check_exists(path: str) -> None:
    """Refuse a database file that does not exist (the ``must_exist`` option).

    Raises:
        BackendConnectionError: Nothing is at `path`; names it (absolute) and what to do.
    """
    if Path(path).exists():
        return
    shown = str(Path(path).absolute())
    msg = (
        f"The SQLite database {shown} does not exist (the option must_exist is set, so it "
        "is not created). Check the path (--backend, the config's url or LEXIGRAM_TASKS_DB); "
        "a worker or `lexigram-tasks enqueue` creates the file on first use."
    )
    raise BackendConnectionError(msg, details={"path": shown})
