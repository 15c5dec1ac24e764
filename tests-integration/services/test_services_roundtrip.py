"""Prove that each service the suite relies on answers a real round trip with its raw client.

When one of these fails, the backend tests that follow are not to blame: the service (or its
URL) is. No product code is imported here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import asyncpg
import pytest
from redis.asyncio import Redis

TIMEOUT_S = 10


@pytest.fixture
async def redis_client(redis_url: str, unique_name: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.delete(f"lexigram-test:{unique_name}")
    await client.aclose()


@pytest.fixture
async def pg_connection(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(postgres_dsn, timeout=TIMEOUT_S)
    yield connection
    # Temporary tables go away with the session that created them.
    await connection.close()


@pytest.fixture
async def amqp_channel(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(amqp_url, timeout=TIMEOUT_S)
    channel = await connection.channel()
    yield channel
    # Exclusive queues are deleted by the broker when their connection closes.
    await connection.close()


@pytest.mark.redis
async def test_redis_set_get_roundtrip(redis_client: Redis, unique_name: str) -> None:
    key = f"lexigram-test:{unique_name}"
    async with asyncio.timeout(TIMEOUT_S):
        assert await redis_client.set(key, b"ping", ex=60)
        assert await redis_client.get(key) == b"ping"


@pytest.mark.postgres
async def test_postgres_select_and_temp_table_roundtrip(
    pg_connection: asyncpg.Connection, unique_name: str
) -> None:
    table = f"lexigram_test_{unique_name}"
    async with asyncio.timeout(TIMEOUT_S):
        assert await pg_connection.fetchval("SELECT 1") == 1
        await pg_connection.execute(f"CREATE TEMP TABLE {table} (id int PRIMARY KEY, body text)")
        await pg_connection.execute(f"INSERT INTO {table} (id, body) VALUES ($1, $2)", 1, "ping")  # noqa: S608  (table name is ours)
        rows = await pg_connection.fetch(f"SELECT id, body FROM {table}")  # noqa: S608  (table name is ours)
    assert [tuple(row) for row in rows] == [(1, "ping")]


@pytest.mark.rabbitmq
async def test_rabbitmq_publish_consume_roundtrip(
    amqp_channel: aio_pika.abc.AbstractChannel, unique_name: str
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        queue = await amqp_channel.declare_queue(
            f"lexigram-test-{unique_name}", auto_delete=True, exclusive=True
        )
        await amqp_channel.default_exchange.publish(
            aio_pika.Message(b"ping", message_id=unique_name), routing_key=queue.name
        )
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    received = (message.body, message.message_id)
                break
    assert received == (b"ping", unique_name)
