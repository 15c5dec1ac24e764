"""One payload whose decoding raises an unexpected error: poison, and its batch is delivered.

Decoding is made to raise `RuntimeError` (not `TaskDecodeError`) for one job's payload, as
a bug in the decoder would, on each networked backend's real server. Every backend turns
what it hands out into jobs through `decode_or_poison`, so that payload becomes the poison
stand-in, and the jobs taken with it in the same `dequeue_batch` are still handed out
(the SQLite run is in that package's unit tests, the decode function's own in the
contracts'). The patch is on the decoder, not on a service.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import POISON_JOB_NAME, Job, TaskQueueProtocol, _codec
from lexigram.tasks.backends.postgres import PostgresTaskQueue, migrate
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.redis import RedisTaskQueue

_BOOM = "decoder.blows.up"

DropFamily = Callable[[str, str], Coroutine[Any, Any, None]]


def _explode_on(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make decoding raise RuntimeError for the payload of a job named `name`."""
    real = _codec.decode_job
    marker = f'"{name}"'.encode()

    def flaky(data: bytes | str) -> Job:
        if marker in (data if isinstance(data, bytes) else data.encode()):
            msg = "the decoder blew up"
            raise RuntimeError(msg)
        return real(data)

    monkeypatch.setattr(_codec, "decode_job", flaky)


@pytest_asyncio.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[TaskQueueProtocol]:
    """An empty queue of its own on the backend's real server; deleted afterwards."""
    name = f"poison-batch-{uuid.uuid4().hex[:8]}"
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        drop: DropFamily = request.getfixturevalue("delete_redis_prefix")
        redis_queue = RedisTaskQueue(url, name, key_prefix=name)
        yield redis_queue
        await redis_queue.close()
        await drop(url, name)
    elif request.param == "postgres":
        dsn: str = request.getfixturevalue("postgres_dsn")
        drop = request.getfixturevalue("drop_pg_schema")
        schema = f"lexigram_test_{uuid.uuid4().hex[:8]}"
        await migrate(dsn, schema)
        pg_queue = PostgresTaskQueue(dsn=dsn, schema=schema, queue_name=name)
        yield pg_queue
        await pg_queue.close()
        await drop(dsn, schema)
    else:
        url = request.getfixturevalue("amqp_url")
        drop = request.getfixturevalue("delete_rabbitmq_family")
        rabbit_queue = RabbitMQTaskQueue(url, name)
        yield rabbit_queue
        await rabbit_queue.close()
        await drop(url, name)


async def test_a_payload_failing_to_decode_unexpectedly_does_not_sink_its_batch(
    queue: TaskQueueProtocol, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [Job(name="send", args=(1,)), Job(name=_BOOM), Job(name="send", args=(3,))]
    for job in jobs:
        assert (await queue.enqueue(job)).is_ok()
    _explode_on(monkeypatch, _BOOM)
    delivered: dict[str, Job] = {}
    deadline = time.monotonic() + 10.0
    while len(delivered) < len(jobs) and time.monotonic() < deadline:
        for job in await queue.dequeue_batch(len(jobs), timeout=0.5):
            delivered[job.id] = job
    assert set(delivered) == {job.id for job in jobs}, "one bad payload kept its siblings back"
    assert [delivered[jobs[0].id].args, delivered[jobs[2].id].args] == [(1,), (3,)]
    poison = delivered[jobs[1].id]
    assert poison.name == POISON_JOB_NAME
    assert poison.queue_name == queue.queue_name
    assert "RuntimeError: the decoder blew up" in (poison.last_error or "")
    for job in delivered.values():
        assert await queue.ack(job.id, lease_token=job.lease_token)
    assert await queue.count(queue.queue_name) == 0
