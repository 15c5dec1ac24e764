"""Fixtures for the RabbitMQ integration tests: a unique queue per test, deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import aiormq
import pytest
import pytest_asyncio

from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue


def family(name: str) -> tuple[list[str], list[str]]:
    """Queues and exchanges a `RabbitMQTaskQueue` named `name` may create."""
    queues = [name, f"{name}.dlx"] + [f"{name}.delay.{1 << exp}ms" for exp in range(5, 32)]
    exchanges = [f"{name}.dlx", f"{name}.delayed"]
    return queues, exchanges


async def delete_queue_family(url: str, name: str) -> None:
    """Delete every queue and exchange of `name` (missing ones are skipped)."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        queues, exchanges = family(name)
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


async def queue_depth(url: str, name: str) -> int:
    """Ready messages in one queue (0 if it does not exist)."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        try:
            ok = await channel.queue_declare(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return 0
        return int(ok.message_count or 0)
    finally:
        await connection.close()


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses."""
    return f"lexigram-test-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def make_rabbitmq_queue(
    amqp_url: str, queue_name: str
) -> AsyncIterator[Callable[..., RabbitMQTaskQueue]]:
    """Factory of handles on the test's queue; all closed and the queues deleted afterwards."""
    made: list[RabbitMQTaskQueue] = []

    def factory(**options: object) -> RabbitMQTaskQueue:
        queue = RabbitMQTaskQueue(amqp_url, queue_name, **options)  # type: ignore[arg-type]
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()
    await delete_queue_family(amqp_url, queue_name)


@pytest_asyncio.fixture
async def rabbitmq_queue(
    make_rabbitmq_queue: Callable[..., RabbitMQTaskQueue],
) -> RabbitMQTaskQueue:
    """A fresh classic queue with the default options."""
    return make_rabbitmq_queue()
