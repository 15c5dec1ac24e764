"""The shipped conformance kit, run in full against SQLiteTaskQueue (no service needed).

Each `make_queue` call opens its own `Database` on the test's file: another
connection, another thread and another wake-up socket, as a second worker process
would have, so the kit's wake-up bounds are measured across connections.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import POISON_JOB_NAME, TaskQueueProtocol
from lexigram.tasks.backends.sqlite import SQLiteOptions, SQLiteTaskQueue
from lexigram.tasks.testing import (
    POISON_PAYLOADS,
    KeyTTLQueueFactory,
    QueueConformance,
    QueueFactory,
    QueueLeaseRenewerConformance,
    QueuePoisonConformance,
)

# Lease waits, most of this module's ~35 s: timing, not the interpreter, so the other-Python
# unit sessions leave it out (it runs in the main one).
pytestmark = pytest.mark.slow


@pytest_asyncio.fixture
async def make_queue(tmp_path: Path, lease_seconds: float) -> AsyncIterator[QueueFactory]:
    path = str(tmp_path / "conformance.db")
    name = f"conformance-{uuid.uuid4().hex[:8]}"
    made: list[SQLiteTaskQueue] = []

    async def factory() -> SQLiteTaskQueue:
        queue = SQLiteTaskQueue(path, queue_name=name, visibility_timeout=lease_seconds)
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()


class TestSQLiteQueueConformance(QueueConformance):
    # An async fixture with arguments replaces the kit's plain one (mypy sees two types).
    @pytest_asyncio.fixture
    async def make_queue_with_idempotency_ttl(  # type: ignore[override]
        self, tmp_path: Path, lease_seconds: float
    ) -> AsyncIterator[KeyTTLQueueFactory]:
        # As make_queue, with the TTL in the queue's options.
        path = str(tmp_path / "conformance-key-ttl.db")
        name = f"conformance-{uuid.uuid4().hex[:8]}"
        made: list[SQLiteTaskQueue] = []

        async def factory(ttl: float) -> SQLiteTaskQueue:
            queue = SQLiteTaskQueue(
                path,
                queue_name=name,
                visibility_timeout=lease_seconds,
                options=SQLiteOptions(idempotency_ttl=ttl),
            )
            made.append(queue)
            return queue

        yield factory
        for queue in made:
            await queue.close()


class TestSQLitePoisonConformance(QueuePoisonConformance):
    async def plant_raw_payload(self, queue: TaskQueueProtocol, raw: bytes) -> str:
        assert isinstance(queue, SQLiteTaskQueue)
        job_id = f"poison-{uuid.uuid4().hex[:8]}"
        await queue.count(queue.queue_name)  # creates the tables
        with closing(sqlite3.connect(queue.path)) as conn, conn:
            conn.execute(
                "INSERT INTO lexigram_jobs (id, queue, priority, available_at, payload) "
                "VALUES (?, ?, 0, 0, ?)",
                (job_id, queue.queue_name, raw),
            )
        return job_id

    async def test_poison_job_names_the_queue_it_came_from(self, queue: TaskQueueProtocol) -> None:
        # The dead-letter record shows the job's queue; `dlq list` printed "-" without it.
        assert isinstance(queue, SQLiteTaskQueue)
        job_id = await self.plant_raw_payload(queue, POISON_PAYLOADS[0])
        held = await queue.get_job(job_id)
        assert held is not None
        assert held.name == POISON_JOB_NAME
        assert held.queue_name == queue.queue_name
        leased = await queue.dequeue()
        assert leased is not None
        assert leased.name == POISON_JOB_NAME
        assert leased.queue_name == queue.queue_name
        assert await queue.ack(leased.id, lease_token=leased.lease_token) is True


class TestSQLiteLeaseRenewerConformance(QueueLeaseRenewerConformance):
    """Leases renewed from the worker's lease keeper thread (its own connection)."""
