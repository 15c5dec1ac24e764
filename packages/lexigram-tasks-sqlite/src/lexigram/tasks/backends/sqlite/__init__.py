"""SQLite backend for lexigram-tasks: `SQLiteTaskQueue` and the SQLite version of every store.

A durable queue in one file that every process on the machine shares, on the standard
library's ``sqlite3`` (no server, no third-party dependency). The entry point
``sqlite = "lexigram.tasks.backends.sqlite:backend"`` (group ``lexigram.tasks.backends``)
names `backend`; ``--backend sqlite:///tasks.db`` or ``type: sqlite`` in config runs the
whole stack on the file. The classes can also be used directly::

    from lexigram.tasks.backends.sqlite import SQLiteTaskQueue

    queue = SQLiteTaskQueue("tasks.db", queue_name="emails")

Modules: `_backend` the entry object, `_options` the options and URL, `_database` the
connection thread, `_notify` the cross-process wake-ups, `_schema` the tables and
migrations, `_queue` the queue, `_stores` and `_coordination` the stores. See
docs/backends/sqlite.md for the semantics, durability settings and operations.
"""

from __future__ import annotations

from lexigram.tasks.backends.sqlite._backend import SQLiteBackend, backend, create_queue
from lexigram.tasks.backends.sqlite._base import SQLiteStore
from lexigram.tasks.backends.sqlite._coordination import (
    SQLiteCacheBackend,
    SQLiteIdempotencyStore,
    SQLiteLock,
    SQLiteLockManager,
    SQLiteProgressTracker,
    SQLiteRateLimiter,
)
from lexigram.tasks.backends.sqlite._database import Database
from lexigram.tasks.backends.sqlite._netfs import network_filesystem
from lexigram.tasks.backends.sqlite._options import (
    DEFAULT_FILENAME,
    DEFAULT_PATH_ENV,
    SQLiteOptions,
    default_path,
    path_from_url,
)
from lexigram.tasks.backends.sqlite._queue import SQLiteTaskQueue
from lexigram.tasks.backends.sqlite._schema import SCHEMA_VERSION
from lexigram.tasks.backends.sqlite._stores import (
    SQLiteDLQBackend,
    SQLiteProgressStore,
    SQLiteResultStore,
    SQLiteSchedulerStore,
    SQLiteWorkflowStateStore,
)

__all__ = [
    "DEFAULT_FILENAME",
    "DEFAULT_PATH_ENV",
    "SCHEMA_VERSION",
    "Database",
    "SQLiteBackend",
    "SQLiteCacheBackend",
    "SQLiteDLQBackend",
    "SQLiteIdempotencyStore",
    "SQLiteLock",
    "SQLiteLockManager",
    "SQLiteOptions",
    "SQLiteProgressStore",
    "SQLiteProgressTracker",
    "SQLiteRateLimiter",
    "SQLiteResultStore",
    "SQLiteSchedulerStore",
    "SQLiteStore",
    "SQLiteTaskQueue",
    "SQLiteWorkflowStateStore",
    "backend",
    "create_queue",
    "default_path",
    "network_filesystem",
    "path_from_url",
]
