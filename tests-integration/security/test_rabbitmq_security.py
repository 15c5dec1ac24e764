"""Envelope signing and the payload limit on the RabbitMQ backend (real RabbitMQ)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiormq
import pytest_asyncio

from lexigram.contracts.tasks import TaskQueueProtocol
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue

MakeQueue = Callable[[], TaskQueueProtocol]
Scenario = Callable[[MakeQueue], Awaitable[None]]


async def _delete_queues(url: str, name: str) -> None:
    """Delete the queues and exchanges a `RabbitMQTaskQueue` named `name` may declare."""
    queues = [name, f"{name}.dlx", *(f"{name}.delay.{1 << exp}ms" for exp in range(5, 32))]
    exchanges = [f"{name}.dlx", f"{name}.delayed"]
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        for queue in queues:
            try:
                await channel.queue_delete(queue)
            except aiormq.exceptions.AMQPError:
                channel = await connection.channel()
        for exchange in exchanges:
            try:
                await channel.exchange_delete(exchange)
            except aiormq.exceptions.AMQPError:
                channel = await connection.channel()
    finally:
        await connection.close()


@pytest_asyncio.fixture
async def make_queue(amqp_url: str, unique_name: str) -> AsyncIterator[MakeQueue]:
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
    await _delete_queues(amqp_url, name)


async def test_rabbitmq_runs_key_a_jobs_and_dead_letters_forged_and_unsigned_ones(
    make_queue: MakeQueue, security_scenario: Scenario
) -> None:
    await security_scenario(make_queue)
