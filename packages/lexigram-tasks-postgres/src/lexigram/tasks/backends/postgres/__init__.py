"""PostgreSQL backend of lexigram-tasks: `PostgresTaskQueue` and Postgres stores (asyncpg).

Registered as the entry point ``postgres`` in group ``lexigram.tasks.backends``; the
entry point names `backend`, whose ``create_*`` factories build the queue and the
stores from a `TaskBackendSpec` (``url`` is the DSN; ``options`` may carry ``schema``,
``table``, ``visibility_timeout``, ``poll_interval``, ``idempotency_ttl``, pool
settings, ``max_attempts``, ``namespace`` and ``result_ttl``).

Example:
    queue = PostgresTaskQueue(dsn="postgresql://app@db/app", queue_name="emails")
    await queue.enqueue(Job(name="send_email", args=("a@b.c",)))
"""

from __future__ import annotations

from lexigram.contracts.tasks import TaskBackendSpec
from lexigram.tasks.backends.postgres._config import (
    DEFAULT_SCHEMA,
    PostgresTaskConfig,
    result_ttl,
    store_namespace,
)
from lexigram.tasks.backends.postgres._connection import Database
from lexigram.tasks.backends.postgres._coordination import (
    PostgresCacheBackend,
    PostgresIdempotencyStore,
    PostgresLock,
    PostgresLockManager,
    PostgresRateLimiter,
)
from lexigram.tasks.backends.postgres._queue import PostgresTaskQueue
from lexigram.tasks.backends.postgres._schema import migrate
from lexigram.tasks.backends.postgres._stores import (
    PostgresDLQBackend,
    PostgresProgressStore,
    PostgresResultStore,
    PostgresSchedulerStore,
    PostgresWorkflowStateStore,
)


def _database(config: PostgresTaskConfig) -> Database:
    return Database(
        config.dsn,
        min_size=config.pool_min_size,
        max_size=config.pool_max_size,
        command_timeout=config.command_timeout,
        connect_timeout=config.connect_timeout,
        max_attempts=config.max_attempts,
    )


class PostgresBackend:
    """The object the ``postgres`` entry point names: builds the queue and the stores.

    Every object built for the same DSN in one event loop shares one connection pool
    and one LISTEN connection; each has its own `close`.
    """

    def __repr__(self) -> str:
        return "PostgresBackend()"

    def create_queue(self, spec: TaskBackendSpec, /) -> PostgresTaskQueue:
        """Build a `PostgresTaskQueue` for `spec` (tables are created on first use).

        Raises:
            TaskConfigurationError: An option is unknown or has a wrong value.
        """
        return PostgresTaskQueue(PostgresTaskConfig.from_spec(spec))

    def create_result_store(self, spec: TaskBackendSpec, /) -> PostgresResultStore:
        """Build a result store (option ``result_ttl``, default one day)."""
        config = PostgresTaskConfig.from_spec(spec)
        return PostgresResultStore(
            _database(config),
            schema=config.schema,
            namespace=store_namespace(spec),
            ttl=result_ttl(spec),
        )

    def create_progress_store(self, spec: TaskBackendSpec, /) -> PostgresProgressStore:
        """Build a progress store."""
        config = PostgresTaskConfig.from_spec(spec)
        return PostgresProgressStore(
            _database(config), schema=config.schema, namespace=store_namespace(spec)
        )

    def create_dlq_backend(self, spec: TaskBackendSpec, /) -> PostgresDLQBackend:
        """Build dead-letter storage."""
        config = PostgresTaskConfig.from_spec(spec)
        return PostgresDLQBackend(
            _database(config), schema=config.schema, namespace=store_namespace(spec)
        )

    def create_scheduler_store(self, spec: TaskBackendSpec, /) -> PostgresSchedulerStore:
        """Build a scheduler store (dict records)."""
        config = PostgresTaskConfig.from_spec(spec)
        return PostgresSchedulerStore(
            _database(config), schema=config.schema, namespace=store_namespace(spec)
        )

    def create_workflow_state_store(self, spec: TaskBackendSpec, /) -> PostgresWorkflowStateStore:
        """Build a workflow state store."""
        config = PostgresTaskConfig.from_spec(spec)
        return PostgresWorkflowStateStore(
            _database(config), schema=config.schema, namespace=store_namespace(spec)
        )

    def create_lock_manager(self, spec: TaskBackendSpec, /) -> PostgresLockManager:
        """Build a lock manager whose locks hold across processes and expire on timeout."""
        config = PostgresTaskConfig.from_spec(spec)
        return PostgresLockManager(_database(config), schema=config.schema)

    def create_cache_backend(self, spec: TaskBackendSpec, /) -> PostgresCacheBackend:
        """Build a string key-value cache with TTLs."""
        config = PostgresTaskConfig.from_spec(spec)
        return PostgresCacheBackend(_database(config), schema=config.schema)

    def create_idempotency_store(self, spec: TaskBackendSpec, /) -> PostgresIdempotencyStore:
        """Build an idempotency store (unique keys with a TTL)."""
        config = PostgresTaskConfig.from_spec(spec)
        return PostgresIdempotencyStore(_database(config), schema=config.schema)

    def create_rate_limiter(
        self,
        spec: TaskBackendSpec,
        /,
        *,
        name: str,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
    ) -> PostgresRateLimiter:
        """Build a token bucket named `name`, shared by every process using it."""
        config = PostgresTaskConfig.from_spec(spec)
        return PostgresRateLimiter(
            _database(config), schema=config.schema, name=name, rate=rate, per=per, burst=burst
        )

    async def migrate(self, spec: TaskBackendSpec, /) -> list[str]:
        """Create or upgrade the tables `spec` uses; return the migrations applied."""
        config = PostgresTaskConfig.from_spec(spec)
        return await migrate(config.dsn, config.schema, table=config.table)


backend = PostgresBackend()
"""The ``postgres`` entry point's target."""


def create_queue(spec: TaskBackendSpec, /) -> PostgresTaskQueue:
    """Build a `PostgresTaskQueue` for `spec` (the same as ``backend.create_queue``)."""
    return backend.create_queue(spec)


__all__ = [
    "DEFAULT_SCHEMA",
    "PostgresBackend",
    "PostgresCacheBackend",
    "PostgresDLQBackend",
    "PostgresIdempotencyStore",
    "PostgresLock",
    "PostgresLockManager",
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
