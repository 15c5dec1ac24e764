"""Envelope signing and the payload limit on the PostgreSQL backend (real PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest_asyncio

from lexigram.contracts.tasks import TaskQueueProtocol
from lexigram.tasks.backends.postgres import PostgresTaskQueue, migrate

MakeQueue = Callable[[], TaskQueueProtocol]
Scenario = Callable[[MakeQueue], Awaitable[None]]


@pytest_asyncio.fixture
async def make_queue(postgres_dsn: str) -> AsyncIterator[MakeQueue]:
    """Handles on one queue in a schema of this test's own, dropped afterwards."""
    schema = f"lexigram_sec_{uuid.uuid4().hex[:8]}"
    await migrate(postgres_dsn, schema)
    made: list[PostgresTaskQueue] = []

    def factory() -> TaskQueueProtocol:
        queue = PostgresTaskQueue(dsn=postgres_dsn, schema=schema, queue_name="security")
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def test_postgres_runs_key_a_jobs_and_dead_letters_forged_and_unsigned_ones(
    make_queue: MakeQueue, security_scenario: Scenario
) -> None:
    await security_scenario(make_queue)
