"""Fixtures for the application tests: a unique Redis key prefix per test, cleaned up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiormq
import pytest_asyncio
import redis.asyncio as aioredis


async def _delete_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        for pattern in (f"{{{prefix}:*", f"{prefix}:*", f"{{{prefix}}}*"):
            batch = [key async for key in client.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(batch), 500):
                await client.delete(*batch[start : start + 500])
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def key_prefix(redis_url: str) -> AsyncIterator[str]:
    """A Redis key prefix no other test uses; its keys are deleted after the test."""
    prefix = f"lexigram-app-{uuid.uuid4().hex[:8]}"
    yield prefix
    await _delete_prefix(redis_url, prefix)


def _rabbitmq_family(name: str) -> tuple[list[str], list[str]]:
    queues = [name, f"{name}.dlx"] + [f"{name}.delay.{1 << exp}ms" for exp in range(5, 32)]
    return queues, [f"{name}.dlx", f"{name}.delayed"]


async def _delete_rabbitmq_queue(url: str, name: str) -> None:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        queues, exchanges = _rabbitmq_family(name)
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
async def amqp_queue_name(amqp_url: str) -> AsyncIterator[str]:
    """A RabbitMQ queue name no other test uses; its queues are deleted after the test."""
    name = f"lexigram-app-{uuid.uuid4().hex[:8]}"
    yield name
    await _delete_rabbitmq_queue(amqp_url, name)
