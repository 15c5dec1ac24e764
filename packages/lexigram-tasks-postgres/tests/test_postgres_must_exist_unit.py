"""The ``must_exist`` option, without a server: declared, carried, and never retried.

The refusal itself (a mistyped schema is not created) runs against a real server in
tests-integration/postgres/test_postgres_must_exist.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    BackendConnectionError,
    TaskBackendSpec,
    TaskConfigurationError,
    option_names,
)
from lexigram.tasks.backends.postgres import PostgresOptions, PostgresTaskConfig, backend
from lexigram.tasks.backends.postgres._connection import Database
from lexigram.tasks.backends.postgres._diagnose import SchemaMissingError


def spec(**options: Any) -> TaskBackendSpec:
    return TaskBackendSpec(
        name="default",
        type="postgres",
        url="postgresql://app:s3cret@db:5432/app",
        queue_name="emails",
        options=options,
    )


def test_the_option_is_declared_and_off_by_default() -> None:
    # The name the command line's read-only commands set (tested with them, in
    # tests-integration/postgres, where the core is installed).
    assert "must_exist" in option_names(backend.options_type)
    assert PostgresOptions().must_exist is False
    assert PostgresTaskConfig().must_exist is False


def test_it_is_read_from_text_and_reaches_the_queue_and_every_store() -> None:
    configured = spec(must_exist="true")
    assert backend.create_queue(configured).config.must_exist is True
    stores = [
        backend.create_result_store(configured),
        backend.create_progress_store(configured),
        backend.create_dlq_backend(configured),
        backend.create_scheduler_store(configured),
        backend.create_workflow_state_store(configured),
        backend.create_lock_manager(configured),
        backend.create_cache_backend(configured),
        backend.create_idempotency_store(configured),
        backend.create_rate_limiter(configured, name="api", rate=10.0),
    ]
    assert all(store._must_exist is True for store in stores)
    assert backend.create_dlq_backend(spec())._must_exist is False
    with pytest.raises(TaskConfigurationError, match="must_exist"):
        PostgresOptions.from_spec(spec(must_exist="perhaps"))


def test_a_queue_config_takes_it_from_a_mapping() -> None:
    config = PostgresTaskConfig.from_mapping({"dsn": "postgresql://h/db", "must_exist": "yes"})
    assert config.must_exist is True


class _Pool:
    """Stands in for an asyncpg pool: hands out one connection and counts the acquires."""

    def __init__(self) -> None:
        self.acquired = 0
        self.terminated = 0

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Pool]:
        self.acquired += 1
        yield self

    def terminate(self) -> None:
        self.terminated += 1


async def test_a_refused_schema_is_raised_at_once_not_retried_as_a_lost_connection() -> None:
    # A BackendConnectionError is an OSError, which `run` otherwise retries with backoff
    # and then wraps ("could not ...: SchemaMissingError: ...").
    pool = _Pool()
    db = Database("postgresql://h/db", max_attempts=5, pool=pool)  # type: ignore[arg-type]
    refusal = SchemaMissingError("The PostgreSQL schema 'x' does not exist ...")

    async def operation(_conn: object) -> None:
        raise refusal

    with pytest.raises(BackendConnectionError) as caught:
        await db.run(operation, "apply the schema migrations")
    assert caught.value is refusal
    assert (pool.acquired, pool.terminated) == (1, 0)  # the connection is sound: kept
