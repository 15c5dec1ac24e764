"""SIGKILLed worker processes lose no job: every job completes and nothing stays stuck.

Three worker processes (one `WorkerPool` worker each, 10 jobs at a time) drain a
queue while one of them is SIGKILLed and replaced every second. A killed process's
TCP connection dies with it, so the broker requeues its unacked jobs (those running
and those prefetched) at once: no lease has to run out.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue

pytestmark = [pytest.mark.rabbitmq, pytest.mark.redis, pytest.mark.slow]

JOBS = 3000
WORKERS = 3
CONCURRENCY = 10
KILLS = 5


async def wait_until_done(recorder: aioredis.Redis, key: str, keys: set[str], within: float) -> int:
    """Observe the recorder until every job has run once (bounded); return how many did."""
    deadline = time.monotonic() + within
    while True:
        done = await recorder.hlen(key)
        if done >= len(keys) or time.monotonic() > deadline:
            return int(done)
        await asyncio.sleep(0.1)  # polling an external system's state, not synchronising


async def test_sigkilled_workers_lose_no_job(  # noqa: PLR0917 - pytest fixtures
    amqp_url: str,
    redis_url: str,
    queue_name: str,
    spawn_worker: Callable[..., Awaitable[Any]],
    broker: Any,
    broker_admin: None,
) -> None:
    queue = RabbitMQTaskQueue(amqp_url, queue_name)
    recorder = aioredis.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"lexigram-test:{queue_name}"
    try:
        keys = [f"job-{index:05d}" for index in range(JOBS)]
        jobs = [Job(id=key, name="record", args=(key,), max_retries=10) for key in keys]
        assert all(result.is_ok() for result in await queue.enqueue_many(jobs))

        workers = [await spawn_worker(CONCURRENCY, 0.05) for _ in range(WORKERS)]
        for worker in workers:
            await worker.ready()
        rng = random.Random(11)
        for _ in range(KILLS):
            await asyncio.sleep(1.0)  # the kill schedule, not a synchronisation
            victim = rng.randrange(WORKERS)
            await workers[victim].kill()
            workers[victim] = await spawn_worker(CONCURRENCY, 0.05)
            await workers[victim].ready()

        assert await wait_until_done(recorder, f"{prefix}:runs", set(keys), 60.0) == JOBS
        for worker in workers:
            assert await worker.stop() == 0
        starts = {k: int(v) for k, v in (await recorder.hgetall(f"{prefix}:starts")).items()}
        runs = {k: int(v) for k, v in (await recorder.hgetall(f"{prefix}:runs")).items()}
        assert set(runs) == set(keys), "some jobs never completed"
        restarted = sum(starts.values()) - JOBS
        duplicates = sum(runs.values()) - JOBS
        # The kills did interrupt running jobs, which came back and completed...
        assert restarted >= 1, "no job was in flight in a killed worker: the test proved nothing"
        # ...and only jobs unacked in a killed process may have run to the end twice.
        assert 0 <= duplicates <= KILLS * CONCURRENCY, f"{duplicates} jobs ran twice"
        print(f"crash test: {restarted} interrupted starts, {duplicates} duplicate runs")  # noqa: T201
        # Nothing stuck: no ready, delayed or unacknowledged message is left.
        assert await queue.count(queue_name) == 0
        listing = await broker.ctl("list_queues", "-p", broker.vhost, "name", "messages", "-q")
        assert f"{queue_name}\t0" in listing.splitlines()
    finally:
        await queue.close()
        await recorder.aclose()
