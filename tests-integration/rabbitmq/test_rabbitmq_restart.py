"""A broker restart mid-run loses no confirmed job.

Two worker processes consume while this test publishes jobs one by one; in the
middle the broker application is stopped (``rabbitmqctl stop_app``) and started again.
Publishes during the outage wait for the reconnect (or fail with an error, and then
do not count); every job whose enqueue returned Ok must complete. Workers reconnect
and resume on their own. A finalizer always starts the broker again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from lexigram.contracts.tasks import BackendConnectionError, Job
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue

# Exclusive: the broker restarts under every other test using it; the integration session runs
# it alone, after the parallel run.
pytestmark = [pytest.mark.rabbitmq, pytest.mark.redis, pytest.mark.slow, pytest.mark.exclusive]

JOBS = 1500
WORKERS = 2


async def wait_for_runs(recorder: aioredis.Redis, key: str, expected: int, within: float) -> None:
    """Observe the recorder until `expected` jobs have run (bounded)."""
    deadline = time.monotonic() + within
    while await recorder.hlen(key) < expected and time.monotonic() < deadline:  # noqa: ASYNC110 - polling another process's progress
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def restartable_broker(broker: Any, broker_admin: None) -> AsyncIterator[Any]:
    """The broker, guaranteed to be running again after the test whatever happens."""
    yield broker
    await broker.ctl("start_app")  # a no-op when it already runs
    await broker.ctl("await_startup")


async def test_broker_restart_loses_no_confirmed_job(
    amqp_url: str,
    redis_url: str,
    queue_name: str,
    spawn_worker: Callable[..., Awaitable[Any]],
    restartable_broker: Any,
) -> None:
    broker = restartable_broker
    producer = RabbitMQTaskQueue(amqp_url, queue_name, reconnect_interval=0.5, publish_timeout=60)
    recorder = aioredis.Redis.from_url(redis_url, decode_responses=True)
    runs_key = f"lexigram-test:{queue_name}:runs"
    confirmed: list[str] = []
    failed: list[str] = []
    try:
        await producer.connect()
        workers = [await spawn_worker(10, 0.01) for _ in range(WORKERS)]
        for worker in workers:
            await worker.ready()

        async def produce(under_way: asyncio.Event) -> None:
            for index in range(JOBS):
                if index == JOBS // 4:
                    under_way.set()  # restart the broker once the stream is well under way
                key = f"job-{index:05d}"
                try:
                    result = await producer.enqueue(Job(id=key, name="record", args=(key,)))
                except BackendConnectionError:
                    failed.append(key)
                    continue
                if result.is_ok():
                    confirmed.append(key)
                await asyncio.sleep(0.004)  # a steady stream, ~250 jobs/s

        under_way = asyncio.Event()
        producing = asyncio.create_task(produce(under_way))
        await under_way.wait()
        await broker.ctl("stop_app")
        stopped_at = len(confirmed)
        await broker.ctl("start_app")
        await broker.ctl("await_startup")
        await asyncio.wait_for(producing, 120)
        assert stopped_at < JOBS, "the restart happened after the stream ended"

        await wait_for_runs(recorder, runs_key, len(set(confirmed)), within=60)
        ran = set(await recorder.hkeys(runs_key))
        missing = sorted(set(confirmed) - ran)
        assert not missing, f"{len(missing)} confirmed jobs never ran, e.g. {missing[:5]}"
        assert len(confirmed) + len(failed) == JOBS
        for worker in workers:
            assert await worker.stop() == 0
        assert await producer.count(queue_name) == 0
        print(  # noqa: T201
            f"restart test: {len(confirmed)} confirmed, {len(failed)} refused during the outage"
        )
    finally:
        await producer.close()
        await recorder.aclose()


async def test_a_broker_restart_is_one_warning_when_it_begins_and_one_when_it_ends(
    make_rabbitmq_queue: Callable[..., RabbitMQTaskQueue],
    restartable_broker: Any,
    caplog: pytest.LogCaptureFixture,
    outage_lines: Callable[[str], tuple[str, str]],
) -> None:
    caplog.set_level(logging.INFO, "lexigram.tasks.backends.rabbitmq")
    queue = make_rabbitmq_queue(reconnect_interval=0.3, publish_timeout=60)
    await queue.connect()
    await restartable_broker.ctl("stop_app")
    await asyncio.sleep(1.5)  # several reconnect attempts fail meanwhile
    await restartable_broker.ctl("start_app")
    await restartable_broker.ctl("await_startup")
    assert (await queue.enqueue(Job(name="after"))).is_ok()  # waited for the reconnect
    deadline = time.monotonic() + 10
    while "reachable again" not in caplog.text and time.monotonic() < deadline:  # noqa: ASYNC110 - aio-pika's reconnect callbacks run on their own time
        await asyncio.sleep(0.05)
    begun, _ = outage_lines("lexigram.tasks.backends.rabbitmq._connection")
    assert begun.startswith("RabbitMQ at amqp://")
    assert "unreachable (" in begun
    assert begun.endswith("reconnecting every 0.3 s.")
    assert "guest:guest" not in caplog.text  # the password is masked
