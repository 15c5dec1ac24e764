"""Fixtures of the PostgreSQL integration tests.

One schema per test session (``lexigram_test_<hex>``, migrated once, dropped at the
end) holds every table; each test gets its own queue name (and store namespace) in it.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from lexigram.tasks.backends.postgres import PostgresTaskQueue, migrate
from lexigram.tasks.backends.postgres._schema import (
    _MIGRATIONS_TABLE,
    QUEUE_MIGRATIONS,
    STORE_MIGRATIONS,
    STORES_SCOPE,
    _render,
    queue_scope,
)


@pytest.fixture(scope="session")
def pg_schema(
    postgres_dsn: str, drop_pg_schema: Callable[[str, str], Coroutine[Any, Any, None]]
) -> Iterator[str]:
    """A migrated schema for this test session, dropped at the end."""
    schema = f"lexigram_test_{uuid.uuid4().hex[:8]}"
    asyncio.run(migrate(postgres_dsn, schema))
    yield schema
    asyncio.run(drop_pg_schema(postgres_dsn, schema))


@pytest_asyncio.fixture
async def pg_conn(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection for inspecting tables (closed after the test)."""
    conn = await asyncpg.connect(postgres_dsn)
    yield conn
    await conn.close()


@pytest_asyncio.fixture
async def make_pg_queue(
    postgres_dsn: str, pg_schema: str, unique_name: str
) -> AsyncIterator[Callable[..., PostgresTaskQueue]]:
    """Factory of queue handles on this test's queue (cleared and closed afterwards)."""
    made: list[PostgresTaskQueue] = []

    def factory(**overrides: Any) -> PostgresTaskQueue:
        options: dict[str, Any] = {
            "dsn": postgres_dsn,
            "schema": pg_schema,
            "queue_name": f"q-{unique_name}",
        }
        options.update(overrides)
        queue = PostgresTaskQueue(**options)
        made.append(queue)
        return queue

    yield factory
    cleaner = PostgresTaskQueue(dsn=postgres_dsn, schema=pg_schema, queue_name=f"q-{unique_name}")
    await cleaner.clear()
    await cleaner.close()
    for queue in made:
        await queue.close()


@pytest_asyncio.fixture
async def pg_queue(make_pg_queue: Callable[..., PostgresTaskQueue]) -> PostgresTaskQueue:
    """A queue handle on this test's own queue."""
    return make_pg_queue()


WORKER_SCRIPT = Path(__file__).with_name("worker_process.py")


@pytest_asyncio.fixture
async def completions(postgres_dsn: str, pg_schema: str) -> str:
    """Create ``<schema>.completions`` (job_key -> starts, runs) for worker processes."""
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{pg_schema}".completions '
            "(job_key text PRIMARY KEY, starts integer NOT NULL, runs integer NOT NULL)"
        )
    finally:
        await conn.close()
    return f'"{pg_schema}".completions'


@pytest_asyncio.fixture
async def spawn_worker(
    postgres_dsn: str, pg_schema: str
) -> AsyncIterator[Callable[..., Awaitable[asyncio.subprocess.Process]]]:
    """Start worker_process.py subprocesses; all are stopped after the test."""
    procs: list[asyncio.subprocess.Process] = []

    async def spawn(
        queue_name: str, *, concurrency: int = 10, lease: float = 2.0, pause: float = 0.1
    ) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER_SCRIPT),
            postgres_dsn,
            pg_schema,
            queue_name,
            str(concurrency),
            str(lease),
            str(pause),
            stdout=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 15.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest_asyncio.fixture
async def stores_schema_at(
    postgres_dsn: str, pg_conn: asyncpg.Connection
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """`await stores_schema_at(n, queue=m)` -> a new schema as an earlier release left it.

    Its store tables stop at ``stores v<n>`` and, with `queue`, its jobs table ``tasks``
    at ``queue:tasks v<m>``: those migrations applied and recorded, none after; for tests
    of an upgrade. The schemas are dropped afterwards.
    """
    made: list[str] = []

    async def at(version: int, *, queue: int = 0) -> str:
        schema = f"lexigram_test_{uuid.uuid4().hex[:8]}"
        made.append(schema)
        await pg_conn.execute(f'CREATE SCHEMA "{schema}"')
        await pg_conn.execute(_MIGRATIONS_TABLE.format(s=f'"{schema}"'))
        for scope, migrations in (
            (STORES_SCOPE, STORE_MIGRATIONS[:version]),
            (queue_scope("tasks"), QUEUE_MIGRATIONS[:queue]),
        ):
            for migration in migrations:
                await pg_conn.execute(_render(migration, schema, "tasks"))
                await pg_conn.execute(
                    f'INSERT INTO "{schema}".schema_migrations (scope, version, name) '  # noqa: S608 - a test's own schema
                    "VALUES ($1, $2, $3)",
                    scope,
                    migration.version,
                    migration.name,
                )
        return schema

    yield at
    for schema in made:
        await pg_conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
