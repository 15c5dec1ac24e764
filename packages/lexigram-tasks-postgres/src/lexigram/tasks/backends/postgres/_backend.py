"""`PostgresBackend`: the object the ``postgres`` entry point names.

It describes itself (URL schemes, the legacy config field, its options type) so the
core needs no knowledge of PostgreSQL, and builds the queue and the stores from a
`TaskBackendSpec` (``url`` is the DSN; ``options`` are read into `PostgresOptions`).
"""

from __future__ import annotations

from typing import ClassVar

from lexigram.contracts.tasks import TaskBackendSpec
from lexigram.tasks.backends.postgres._connection import Database
from lexigram.tasks.backends.postgres._coordination import (
    PostgresCacheBackend,
    PostgresIdempotencyStore,
    PostgresLockManager,
    PostgresRateLimiter,
)
from lexigram.tasks.backends.postgres._options import PostgresOptions, PostgresTaskConfig
from lexigram.tasks.backends.postgres._progress import PostgresProgressStore
from lexigram.tasks.backends.postgres._queue import PostgresTaskQueue
from lexigram.tasks.backends.postgres._schema import migrate
from lexigram.tasks.backends.postgres._stores import (
    PostgresDLQBackend,
    PostgresResultStore,
    PostgresSchedulerStore,
)
from lexigram.tasks.backends.postgres._workflows import PostgresWorkflowStateStore


def _database(spec: TaskBackendSpec, options: PostgresOptions) -> Database:
    config = PostgresTaskConfig.from_options(spec.url, spec.queue_name, options)
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
    and one LISTEN connection; each has its own `close`. Every factory raises
    `TaskConfigurationError` for an unknown option or a wrong value.

    Attributes:
        url_schemes: The URL schemes that select this backend.
        url_field: The config field that holds the DSN when ``url`` is not set.
        options_type: The dataclass of the options a spec may carry.
        first_answer_options: The options ``--connect-timeout`` sets: asyncpg's
            connect timeout covers the connection and the server's first answer.
    """

    url_schemes: ClassVar[tuple[str, ...]] = ("postgresql", "postgres")
    url_field: ClassVar[str | None] = "postgres_dsn"
    options_type: ClassVar[type[PostgresOptions]] = PostgresOptions
    first_answer_options: ClassVar[tuple[str, ...]] = ("connect_timeout",)

    def __repr__(self) -> str:
        return "PostgresBackend()"

    def create_queue(self, spec: TaskBackendSpec, /) -> PostgresTaskQueue:
        """Build a `PostgresTaskQueue` for `spec` (tables are created on first use).

        With the option ``must_exist``, its first use refuses a schema that holds none of
        the backend's tables (a `BackendConnectionError`) instead of creating it.
        """
        return PostgresTaskQueue(PostgresTaskConfig.from_spec(spec))

    def create_result_store(self, spec: TaskBackendSpec, /) -> PostgresResultStore:
        """Build a result store (option ``result_ttl``, default an hour, as on every backend)."""
        options = PostgresOptions.from_spec(spec)
        return PostgresResultStore(
            _database(spec, options),
            schema=options.schema,
            namespace=options.namespace,
            ttl=options.result_ttl,
            must_exist=options.must_exist,
        )

    def create_progress_store(self, spec: TaskBackendSpec, /) -> PostgresProgressStore:
        """Build a progress store (option ``progress_ttl``, default one day)."""
        options = PostgresOptions.from_spec(spec)
        return PostgresProgressStore(
            _database(spec, options),
            schema=options.schema,
            namespace=options.namespace,
            ttl=options.progress_ttl,
            must_exist=options.must_exist,
        )

    def create_dlq_backend(self, spec: TaskBackendSpec, /) -> PostgresDLQBackend:
        """Build dead-letter storage."""
        options = PostgresOptions.from_spec(spec)
        return PostgresDLQBackend(
            _database(spec, options),
            schema=options.schema,
            namespace=options.namespace,
            must_exist=options.must_exist,
        )

    def create_scheduler_store(self, spec: TaskBackendSpec, /) -> PostgresSchedulerStore:
        """Build a scheduler store (dict records)."""
        options = PostgresOptions.from_spec(spec)
        return PostgresSchedulerStore(
            _database(spec, options),
            schema=options.schema,
            namespace=options.namespace,
            must_exist=options.must_exist,
        )

    def create_workflow_state_store(self, spec: TaskBackendSpec, /) -> PostgresWorkflowStateStore:
        """Build a workflow state store."""
        options = PostgresOptions.from_spec(spec)
        return PostgresWorkflowStateStore(
            _database(spec, options),
            schema=options.schema,
            namespace=options.namespace,
            must_exist=options.must_exist,
        )

    def create_lock_manager(self, spec: TaskBackendSpec, /) -> PostgresLockManager:
        """Build a lock manager whose locks hold across processes and expire on timeout."""
        options = PostgresOptions.from_spec(spec)
        return PostgresLockManager(
            _database(spec, options), schema=options.schema, must_exist=options.must_exist
        )

    def create_cache_backend(self, spec: TaskBackendSpec, /) -> PostgresCacheBackend:
        """Build a string key-value cache with TTLs."""
        options = PostgresOptions.from_spec(spec)
        return PostgresCacheBackend(
            _database(spec, options), schema=options.schema, must_exist=options.must_exist
        )

    def create_idempotency_store(self, spec: TaskBackendSpec, /) -> PostgresIdempotencyStore:
        """Build an idempotency store (unique keys with a TTL)."""
        options = PostgresOptions.from_spec(spec)
        return PostgresIdempotencyStore(
            _database(spec, options), schema=options.schema, must_exist=options.must_exist
        )

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
        options = PostgresOptions.from_spec(spec)
        return PostgresRateLimiter(
            _database(spec, options),
            schema=options.schema,
            name=name,
            rate=rate,
            per=per,
            burst=burst,
            must_exist=options.must_exist,
        )

    async def migrate(self, spec: TaskBackendSpec, /) -> list[str]:
        """Create or upgrade the tables `spec` uses; return the migrations applied.

        The option ``must_exist`` does not apply: creating the tables is the point.
        """
        config = PostgresTaskConfig.from_spec(spec)
        return await migrate(
            config.dsn, config.schema, table=config.table, timeout=config.connect_timeout
        )


backend = PostgresBackend()
"""The ``postgres`` entry point's target."""


def create_queue(spec: TaskBackendSpec, /) -> PostgresTaskQueue:
    """Build a `PostgresTaskQueue` for `spec` (the same as ``backend.create_queue``)."""
    return backend.create_queue(spec)
