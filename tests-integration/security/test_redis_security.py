"""Envelope signing and the payload limit on the Redis backend (real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio

from lexigram.contracts.tasks import TaskQueueProtocol
from lexigram.tasks.backends.redis import RedisTaskQueue

MakeQueue = Callable[[], TaskQueueProtocol]
Scenario = Callable[[MakeQueue], Awaitable[None]]


@pytest_asyncio.fixture
async def make_queue(redis_url: str, unique_name: str) -> AsyncIterator[MakeQueue]:
    """Handles on one queue under this test's own key prefix, cleared and closed afterwards."""
    made: list[RedisTaskQueue] = []

    def factory() -> TaskQueueProtocol:
        queue = RedisTaskQueue(redis_url, "security", key_prefix=f"sec-{unique_name}")
        made.append(queue)
        return queue

    yield factory
    if made:
        await made[0].clear()
    for queue in made:
        await queue.close()


async def test_redis_runs_key_a_jobs_and_dead_letters_forged_and_unsigned_ones(
    make_queue: MakeQueue, security_scenario: Scenario
) -> None:
    await security_scenario(make_queue)
