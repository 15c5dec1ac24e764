"""Cancelling jobs on SQLite: the kit's cancellation theme, with the SQLite result store.

Each ``make_queue`` call opens its own `Database` on the test's file (another
connection, thread and wake-up socket), as another process would have: the cancel
goes through one handle and reaches the worker on the other through the cancel row
and the queue's cancel wake-up topic.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import ResultStoreProtocol
from lexigram.tasks.backends.sqlite import SQLiteResultStore, SQLiteTaskQueue
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
