"""PostgreSQL backend of lexigram-tasks: `PostgresTaskQueue` and Postgres stores (asyncpg).

Registered as the entry point ``postgres`` in group ``lexigram.tasks.backends``; the
entry point names `backend` (in `_backend`), whose ``create_*`` factories build the
queue and the stores from a `TaskBackendSpec`. The files have one role each:
`_backend` the entry object, `_options` the options, `_connection` pools and the
LISTEN connection, `_queue` the queue (with `_sql`, `_enqueue`, `_schema`), `_stores`
and `_coordination` the stores.

Example:
    queue = PostgresTaskQueue(dsn="postgresql://app@db/app", queue_name="emails")
    await queue.enqueue(Job(name="send_email", args=("a@b.c",)))
"""

from __future__ import annotations

from lexigram.tasks.backends.postgres._backend import PostgresBackend, backend, create_queue
from lexigram.tasks.backends.postgres._coordination import (
    PostgresCacheBackend,
    PostgresIdempotencyStore,
    PostgresLock,
    PostgresLockManager,
    PostgresRateLimiter,
)
from lexigram.tasks.backends.postgres._options import (
    DEFAULT_SCHEMA,
    PostgresOptions,
    PostgresTaskConfig,
)
from lexigram.tasks.backends.postgres._progress import PostgresProgressStore
from lexigram.tasks.backends.postgres._queue import PostgresTaskQueue
from lexigram.tasks.backends.postgres._schema import migrate
from lexigram.tasks.backends.postgres._stores import (
    PostgresDLQBackend,
    PostgresResultStore,
    PostgresSchedulerStore,
)
from lexigram.tasks.backends.postgres._workflows import PostgresWorkflowStateStore

__all__ = [
    "DEFAULT_SCHEMA",
    "PostgresBackend",
    "PostgresCacheBackend",
    "PostgresDLQBackend",
    "PostgresIdempotencyStore",
    "PostgresLock",
    "PostgresLockManager",
    "PostgresOptions",
    "PostgresProgressStore",
    "PostgresRateLimiter",
    "PostgresResultStore",
    "PostgresSchedulerStore",
    "PostgresTaskConfig",
    "PostgresTaskQueue",
    "PostgresWorkflowStateStore",
    "backend",
    "create_queue",
    "migrate",
]
