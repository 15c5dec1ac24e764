"""Envelope signing and the payload limit on the SQLite backend (no service needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest_asyncio

from lexigram.contracts.tasks import TaskQueueProtocol
from lexigram.tasks.backends.sqlite import SQLiteTaskQueue

MakeQueue = Callable[[], TaskQueueProtocol]
Scenario = Callable[[MakeQueue], Awaitable[None]]


@pytest_asyncio.fixture
async def make_queue(tmp_path: Path) -> AsyncIterator[MakeQueue]:
    """Handles on one queue of a fresh database file, closed afterwards."""
    made: list[SQLiteTaskQueue] = []
    path = str(tmp_path / "security.db")

    def factory() -> TaskQueueProtocol:
        queue = SQLiteTaskQueue(path, queue_name="security")
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()


async def test_sqlite_runs_key_a_jobs_and_dead_letters_forged_and_unsigned_ones(
    make_queue: MakeQueue, security_scenario: Scenario
) -> None:
    await security_scenario(make_queue)
