"""Cancelling jobs on SQLite: the kit's cancellation theme, with the SQLite result store.

Each ``make_queue`` call opens its own `Database` on the test's file (another
connection, thread and wake-up socket), as another process would have: the cancel
goes through one handle and reaches the worker on the other through the cancel row
and the queue's cancel wake-up topic.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import CancelOutcome, Job, ResultStoreProtocol
from lexigram.tasks.backends.sqlite import SQLiteOptions, SQLiteResultStore, SQLiteTaskQueue
from lexigram.tasks.testing import QueueCancellationConformance, QueueFactory


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "cancel.db")


@pytest_asyncio.fixture
async def make_queue(db_path: str, lease_seconds: float) -> AsyncIterator[QueueFactory]:
    name = f"cancel-{uuid.uuid4().hex[:8]}"
    made: list[SQLiteTaskQueue] = []

    async def factory() -> SQLiteTaskQueue:
        queue = SQLiteTaskQueue(db_path, queue_name=name, visibility_timeout=lease_seconds)
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()


class TestSQLiteCancellation(QueueCancellationConformance):
    # An async fixture with arguments replaces the kit's plain one (mypy sees two types).
    @pytest_asyncio.fixture
    async def result_store(  # type: ignore[override]
        self, db_path: str
    ) -> AsyncIterator[ResultStoreProtocol]:
        store = SQLiteResultStore(db_path)
        yield store
        await store.close()


async def test_a_subscriber_that_misses_the_wake_up_reads_the_announcement_at_its_poll(
    db_path: str,
) -> None:
    # A subscriber whose wake-up socket cannot be bound (a platform without UNIX sockets)
    # still hears of a cancellation, at its next poll.
    name = f"cancel-{uuid.uuid4().hex[:8]}"
    holder = SQLiteTaskQueue(db_path, queue_name=name, options=SQLiteOptions(poll_interval=0.2))
    canceller = SQLiteTaskQueue(db_path, queue_name=name)
    holder.database.notifier.supported = False
    try:
        job_id = (await canceller.enqueue(Job(name="cancel.me"))).unwrap()
        [job] = await holder.dequeue_batch(1, timeout=2.0)
        iterator = holder.cancellations()
        first = asyncio.ensure_future(anext(iterator))
        await asyncio.sleep(0.1)  # subscribed: announcements from now on are its own
        assert await canceller.cancel(job.id) is CancelOutcome.STOPPING
        assert await asyncio.wait_for(first, 1.0) == job_id
        await iterator.aclose()  # type: ignore[attr-defined]
    finally:
        await holder.close()
        await canceller.close()
