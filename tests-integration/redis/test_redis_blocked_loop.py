"""A handler that blocks the event loop past Redis's command deadline loses no reply.

The reply to a command in flight arrives while the loop is blocked; when the loop
resumes, the deadline's timer is due in the same turn. The reply must win: dropping the
connection and sending the command again would run it twice (an ack then reports the
job lost, an INCR counts twice).
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio as aioredis

from lexigram.tasks.backends.redis import RedisConnector

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("multiplex", [True, False], ids=["multiplexed", "redis-py"])
async def test_a_reply_that_arrived_while_the_loop_was_blocked_is_not_sent_again(
    redis_url: str, key_prefix: str, multiplex: bool, caplog: pytest.LogCaptureFixture
) -> None:
    connector = RedisConnector(redis_url, command_timeout=0.3, multiplex=multiplex)
    key = f"{key_prefix}:counter"
    try:
        await connector.call("warm up", lambda client: client.execute_command("PING"), fast=True)
        with caplog.at_level(logging.WARNING):
            call = asyncio.create_task(
                connector.call(
                    "incr", lambda client: client.execute_command("INCR", key), fast=True
                )
            )
            await asyncio.sleep(0)  # the command is sent; its reply is read after the block
            time.sleep(0.6)  # noqa: ASYNC251 - a handler blocking the loop past the deadline
            assert await call == 1
        assert not [r for r in caplog.records if "unreachable" in r.getMessage()]
    finally:
        client = aioredis.Redis.from_url(redis_url)
        try:
            assert int(await client.get(key) or 0) == 1, "the command was sent twice"
            await client.delete(key)
        finally:
            await client.aclose()
        await connector.close()
