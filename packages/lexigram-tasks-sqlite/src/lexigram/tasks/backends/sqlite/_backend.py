"""`SQLiteBackend`: the object the ``sqlite`` entry point names.

It describes itself (URL scheme, no legacy config field, its options type) so the core
needs no knowledge of SQLite, and builds the queue and every store from a
`TaskBackendSpec`: ``url`` is a ``sqlite:///`` URL (none: the default file), and
``options`` are read into `SQLiteOptions` with `parse_options`. Every object built for
one file shares one `Database` (one connection, one thread, one wake-up socket), so
a worker's acks and result writes are committed together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from lexigram.contracts.tasks import TaskBackendSpec, parse_options
from lexigram.tasks.backends.sqlite._base import SQLiteStore
from lexigram.tasks.backends.sqlite._coordination import (
    SQLiteCacheBackend,
    SQLiteIdempotencyStore,
    SQLiteLockManager,
    SQLiteProgressTracker,
    SQLiteRateLimiter,
)
from lexigram.tasks.backends.sqlite._database import Database
from lexigram.tasks.backends.sqlite._options import SQLiteOptions, check_exists, path_from_url
from lexigram.tasks.backends.sqlite._queue import SQLiteTaskQueue
from lexigram.tasks.backends.sqlite._stores import (
    SQLiteDLQBackend,
    SQLiteProgressStore,
    SQLiteResultStore,
    SQLiteSchedulerStore,
    SQLiteWorkflowStateStore,
)

StoreT = TypeVar("StoreT", bound=SQLiteStore)


def read_options(spec: TaskBackendSpec) -> SQLiteOptions:
    """Read `spec.options` into `SQLiteOptions` (one clear error for a bad option)."""
    return parse_options("sqlite", spec.name, spec.options, SQLiteOptions)


class SQLiteBackend:
    """The object the ``sqlite`` entry point names: builds the queue and the stores.

    Attributes:
        url_schemes: The URL schemes that select this backend.
        url_field: None: there is no older per-backend config field.
        options_type: The dataclass of the options a spec may carry.
        first_answer_options: The option ``--connect-timeout`` sets: how long opening
            the file waits for another process's write lock.
        url_required: False: without a URL the queue uses its default file.
    """

    url_schemes: ClassVar[tuple[str, ...]] = ("sqlite",)
    url_field: ClassVar[str | None] = None
    options_type: ClassVar[type[SQLiteOptions]] = SQLiteOptions
    # No server to wait for, but opening may wait for another process's write lock.
    first_answer_options: ClassVar[tuple[str, ...]] = ("open_timeout",)
    url_required: ClassVar[bool] = False

    def __init__(self) -> None:
        self._databases: dict[tuple[Any, ...], Database] = {}

    def __repr__(self) -> str:
        return f"SQLiteBackend(files={len(self._databases)})"

    def database(self, spec: TaskBackendSpec, options: SQLiteOptions | None = None) -> Database:
        """Return a reference to the shared `Database` of the spec's file (release with close).

        Raises:
            BackendConnectionError: The option ``must_exist`` is set and the file is missing.
        """
        opts = options or read_options(spec)
        path = path_from_url(spec.url)
        if opts.must_exist:
            # Checked before anything is built: the notification socket's directory and
            # the connection would otherwise create the file and its directory.
            check_exists(path)
        key = (
            str(Path(path).absolute()),
            os.getpid(),
            opts.synchronous,
            opts.busy_timeout,
            opts.open_timeout,
            opts.allow_network_filesystem,
        )
        found = self._databases.get(key)
        if found is not None and not found.closed:
            return found.retain()
        found = Database(
            path,
            synchronous=opts.synchronous,
            busy_timeout=opts.busy_timeout,
            allow_network_filesystem=opts.allow_network_filesystem,
            open_timeout=opts.open_timeout,
        )
        self._databases[key] = found
        return found

    def _store(self, kind: type[StoreT], spec: TaskBackendSpec, **kwargs: Any) -> StoreT:
        options = read_options(spec)
        return kind(
            options=options,
            database=self.database(spec, options),
            close_database=True,
            **kwargs,
        )

    def create_queue(self, spec: TaskBackendSpec, /) -> SQLiteTaskQueue:
        """Build a `SQLiteTaskQueue` for `spec` (the file and tables are made on first use)."""
        options = read_options(spec)
        return SQLiteTaskQueue(
            queue_name=spec.queue_name,
            options=options,
            database=self.database(spec, options),
            close_database=True,
        )

    def create_result_store(self, spec: TaskBackendSpec, /) -> SQLiteResultStore:
        """Build a result store (option ``result_ttl``)."""
        return self._store(SQLiteResultStore, spec)

    def create_progress_store(self, spec: TaskBackendSpec, /) -> SQLiteProgressStore:
        """Build a progress store (option ``progress_ttl``)."""
        return self._store(SQLiteProgressStore, spec)

    def create_progress_tracker(self, spec: TaskBackendSpec, /) -> SQLiteProgressTracker:
        """Build a progress tracker whose subscriptions follow changes from any process."""
        return self._store(SQLiteProgressTracker, spec)

    def create_dlq_backend(self, spec: TaskBackendSpec, /) -> SQLiteDLQBackend:
        """Build a dead-letter store (option ``dlq_max_entries``)."""
        return self._store(SQLiteDLQBackend, spec)

    def create_scheduler_store(self, spec: TaskBackendSpec, /) -> SQLiteSchedulerStore:
        """Build a scheduler store."""
        return self._store(SQLiteSchedulerStore, spec)

    def create_workflow_state_store(self, spec: TaskBackendSpec, /) -> SQLiteWorkflowStateStore:
        """Build a workflow state store."""
        return self._store(SQLiteWorkflowStateStore, spec)

    def create_lock_manager(self, spec: TaskBackendSpec, /) -> SQLiteLockManager:
        """Build a lock manager whose locks hold across processes."""
        return self._store(SQLiteLockManager, spec)

    def create_cache_backend(self, spec: TaskBackendSpec, /) -> SQLiteCacheBackend:
        """Build a cache backend."""
        return self._store(SQLiteCacheBackend, spec)

    def create_idempotency_store(self, spec: TaskBackendSpec, /) -> SQLiteIdempotencyStore:
        """Build an idempotency store."""
        return self._store(SQLiteIdempotencyStore, spec)

    def create_rate_limiter(
        self,
        spec: TaskBackendSpec,
        /,
        *,
        name: str,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
    ) -> SQLiteRateLimiter:
        """Build a token bucket shared by every process using the same `name` on the file."""
        return self._store(SQLiteRateLimiter, spec, name=name, rate=rate, per=per, burst=burst)


backend = SQLiteBackend()
"""The object the ``sqlite`` entry point in group ``lexigram.tasks.backends`` names."""


def create_queue(spec: TaskBackendSpec, /) -> SQLiteTaskQueue:
    """Build a `SQLiteTaskQueue` for `spec` (the module-level form of `backend.create_queue`)."""
    return backend.create_queue(spec)
