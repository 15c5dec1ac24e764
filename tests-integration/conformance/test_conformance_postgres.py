"""The shipped conformance kit, run in full against PostgresTaskQueue on a real server.

The tables live in a schema of their own for this test module (``lexigram_test_<hex>``,
dropped at the end); each test gets its own queue name inside it. The poison tests
plant raw bytes straight into the ``payload`` column, where an encoded job would be.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from lexigram.contracts.tasks import ResultStoreProtocol, TaskQueueProtocol
from lexigram.tasks.backends.postgres import PostgresResultStore, PostgresTaskQueue, migrate
from lexigram.tasks.backends.postgres._connection import Database
from lexigram.tasks.testing import (
    KeyTTLQueueFactory,
    PairedStoreFactory,
    QueueConformance,
    QueueFactory,
    QueueLeaseRenewerConformance,
    QueuePoisonConformance,
    QueueResultAckerConformance,
)

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def conformance_schema(
    postgres_dsn: str, drop_pg_schema: Callable[[str, str], Coroutine[Any, Any, None]]
) -> Iterator[str]:
    schema = f"lexigram_test_{uuid.uuid4().hex[:8]}"
    asyncio.run(migrate(postgres_dsn, schema))
    yield schema
    asyncio.run(drop_pg_schema(postgres_dsn, schema))


@asynccontextmanager
async def _queue_handles(
    dsn: str, schema: str, lease_seconds: float
) -> AsyncIterator[Callable[..., Awaitable[PostgresTaskQueue]]]:
    """Handles on one fresh queue (a key TTL may be given); emptied and closed after."""
    name = f"conformance-{uuid.uuid4().hex[:8]}"
    made: list[PostgresTaskQueue] = []

    async def factory(idempotency_ttl: float | None = None) -> PostgresTaskQueue:
        # Each call is another consumer handle on the same queue, as a second worker
        # process would have.
        queue = PostgresTaskQueue(
            dsn=dsn,
            schema=schema,
            queue_name=name,
            visibility_timeout=lease_seconds,
            idempotency_ttl=idempotency_ttl,
        )
        made.append(queue)
        return queue

    yield factory
    cleaner = PostgresTaskQueue(dsn=dsn, schema=schema, queue_name=name)
    await cleaner.clear()
    await cleaner.close()
    for queue in made:
        await queue.close()


@pytest_asyncio.fixture
async def make_queue(
    postgres_dsn: str, conformance_schema: str, lease_seconds: float
) -> AsyncIterator[QueueFactory]:
    async with _queue_handles(postgres_dsn, conformance_schema, lease_seconds) as factory:
        yield factory


@pytest_asyncio.fixture
async def make_paired_result_store(
    postgres_dsn: str, conformance_schema: str
) -> AsyncIterator[PairedStoreFactory]:
    """A result store on the queue's database and schema, as the backend builds one."""
    made: list[PostgresResultStore] = []

    async def factory(queue: TaskQueueProtocol) -> ResultStoreProtocol:
        assert isinstance(queue, PostgresTaskQueue)
        store = PostgresResultStore(
            Database(postgres_dsn), schema=conformance_schema, namespace=queue.queue_name
        )
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


async def plant_payload(queue: PostgresTaskQueue, raw: bytes) -> str:
    """Insert `raw` as the payload of a new ready row of `queue`; return its id."""
    config = queue.config
    job_id = f"raw-{uuid.uuid4().hex}"
    conn = await asyncpg.connect(config.dsn)
    try:
        await conn.execute(
            f'INSERT INTO "{config.schema}"."{config.table}" (id, queue, payload) '  # noqa: S608 - test schema
            "VALUES ($1, $2, $3)",
            job_id,
            config.queue_name,
            raw,
        )
    finally:
        await conn.close()
    return job_id


class TestPostgresQueueConformance(QueueConformance, QueuePoisonConformance):
    # An async fixture with arguments replaces the kit's plain one (mypy sees two types).
    @pytest_asyncio.fixture
    async def make_queue_with_idempotency_ttl(  # type: ignore[override]
        self, postgres_dsn: str, conformance_schema: str, lease_seconds: float
    ) -> AsyncIterator[KeyTTLQueueFactory]:
        async with _queue_handles(postgres_dsn, conformance_schema, lease_seconds) as factory:
            yield factory

    async def plant_raw_payload(self, queue: TaskQueueProtocol, raw: bytes) -> str:
        assert isinstance(queue, PostgresTaskQueue)
        return await plant_payload(queue, raw)


class TestPostgresLeaseRenewerConformance(QueueLeaseRenewerConformance):
    """Leases renewed from the worker's lease keeper thread (its own connection)."""


class TestPostgresResultAckerConformance(QueueResultAckerConformance):
    """A succeeded job's ack and result in one statement (`result_acker`)."""
