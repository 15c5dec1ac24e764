"""Envelope signing and the payload limit on the RabbitMQ backend (real RabbitMQ)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio

from lexigram.contracts.tasks import TaskQueueProtocol
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue

MakeQueue = Callable[[], TaskQueueProtocol]
Scenario = Callable[[MakeQueue], Awaitable[None]]


@pytest_asyncio.fixture
async def make_queue(
    amqp_url: str,
    unique_name: str,
    delete_rabbitmq_family: Callable[[str, str], Awaitable[None]],
) -> AsyncIterator[MakeQueue]:
    """Handles on this test's own queue, closed and deleted afterwards."""
    name = f"sec-{unique_name}"
    made: list[RabbitMQTaskQueue] = []

    def factory() -> TaskQueueProtocol:
        queue = RabbitMQTaskQueue(amqp_url, name)
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()
    await delete_rabbitmq_family(amqp_url, name)


async def test_rabbitmq_runs_key_a_jobs_and_dead_letters_forged_and_unsigned_ones(
    make_queue: MakeQueue, security_scenario: Scenario
) -> None:
    await security_scenario(make_queue)
