"""The multiplexed connection against a real server: pipelining, cancellation, ACL users."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from lexigram.contracts.tasks import BackendConnectionError, Job
from lexigram.tasks.backends.redis import RedisConnector, RedisTaskQueue
from lexigram.tasks.backends.redis._mux import MuxClient
from redis import exceptions as rexc

pytestmark = pytest.mark.redis


def _empty_key() -> str:
    return f"lexigram-test-empty-{uuid.uuid4().hex}"


async def test_concurrent_requests_share_one_connection_in_order(redis_url: str) -> None:
    mux = MuxClient(redis_url, {})
    try:
        replies = await asyncio.gather(*(mux.execute_command("ECHO", str(n)) for n in range(500)))
        assert replies == [str(n).encode() for n in range(500)]
        with pytest.raises(rexc.ResponseError):
            await mux.execute_command("NOT-A-COMMAND")
        assert await mux.execute_command("PING") == b"PONG"  # still in step after an error
    finally:
        await mux.aclose()


async def test_cancelled_request_leaves_the_connection_usable(redis_url: str) -> None:
    mux = MuxClient(redis_url, {})
    try:
        # A blocking pop on an empty key keeps the reply back long enough to cancel the
        # waiter first (the queue never sends blocking commands here; the test does).
        slow = asyncio.create_task(mux.execute_command("BLPOP", _empty_key(), "0.2"))
        await asyncio.sleep(0.05)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert await mux.execute_command("ECHO", "after") == b"after"
    finally:
        await mux.aclose()


async def test_socket_timeout_drops_a_silent_connection(redis_url: str) -> None:
    mux = MuxClient(redis_url, {"socket_timeout": 0.05})
    try:
        with pytest.raises(rexc.TimeoutError):
            await mux.execute_command("BLPOP", _empty_key(), "0.3")
        assert await mux.execute_command("PING") == b"PONG"  # reconnected
    finally:
        await mux.aclose()


async def test_acl_user_and_database_from_the_url(
    redis_url: str, make_redis_queue: Callable[..., RedisTaskQueue], key_prefix: str
) -> None:
    admin = aioredis.Redis.from_url(redis_url)
    user, password = f"lexigram-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", f"~{{{key_prefix}:*", "+@all"
    )
    host = redis_url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    try:
        for multiplex in (True, False):
            url = f"redis://{user}:{password}@{host}/3"
            queue = RedisTaskQueue(
                url,
                "acl",
                key_prefix=key_prefix,
                connector=RedisConnector(url, multiplex=multiplex),
            )
            job = Job(name="x")
            assert (await queue.enqueue(job)).is_ok()
            got = await queue.dequeue_batch(1, timeout=1)
            assert [j.id for j in got] == [job.id]
            await queue.ack(job.id)
            await queue.close()
        # The jobs went to database 3, not the default one.
        db3 = aioredis.Redis.from_url(f"redis://{host}/3")
        try:
            assert await db3.exists(f"{{{key_prefix}:acl}}:seq") == 1
            await db3.delete(f"{{{key_prefix}:acl}}:seq")
        finally:
            await db3.aclose()
        wrong = RedisTaskQueue(f"redis://{user}:nope@{host}/3", "acl", key_prefix=key_prefix)
        with pytest.raises(BackendConnectionError) as info:
            await wrong.enqueue(Job(name="x"))
        assert info.value.details["transient"] is False
        assert "nope" not in str(info.value)
        await wrong.close()
    finally:
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()
