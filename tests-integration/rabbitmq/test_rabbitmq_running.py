"""What other processes see of running jobs and cron schedules, with real processes.

- A worker SIGKILLed while it holds a job stops counting as RUNNING once its lease is
  over: the running record lives as long as the lease and each heartbeat renews it.
  (It used to live 7 days, so `count(RUNNING)` and ``inspect`` reported phantom
  running jobs after every SIGKILL.)
- Three scheduler processes on RabbitMQ's default configuration (no shared store)
  enqueue each cron occurrence once: its idempotency key is claimed on the broker.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
import uuid
from pathlib import Path

import pytest

from lexigram.contracts.tasks import Job, JobStatus
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.redis import RedisCacheBackend

pytestmark = [pytest.mark.rabbitmq]

HERE = Path(__file__).parent
LEASE = 1.5


async def _spawn(script: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / script), *args, stdout=asyncio.subprocess.PIPE
    )


async def _line(proc: asyncio.subprocess.Process, within: float = 30.0) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), within)).decode().strip()


@pytest.mark.redis
async def test_sigkilled_holder_stops_counting_as_running_after_its_lease(
    amqp_url: str, redis_url: str, queue_name: str
) -> None:
    prefix = f"lexigram-test-{uuid.uuid4().hex[:8]}"
    store = RedisCacheBackend(redis_url, key_prefix=prefix)
    observer = RabbitMQTaskQueue(amqp_url, queue_name, visibility_timeout=LEASE, state_store=store)
    proc = await _spawn("holder_process.py", amqp_url, redis_url, queue_name, prefix, str(LEASE))
    try:
        job = Job(name="long")
        assert (await observer.enqueue(job)).is_ok()
        assert await _line(proc) == f"held {job.id}"
        # Heartbeats keep it RUNNING well past one lease while the holder lives.
        await asyncio.sleep(LEASE * 2)
        assert await observer.count(queue_name, JobStatus.RUNNING) == 1
        running = await observer.get_job(job.id)
        assert running is not None
        assert running.status is JobStatus.RUNNING

        proc.kill()
        await proc.wait()
        killed = time.monotonic()
        while await observer.count(queue_name, JobStatus.RUNNING) != 0:
            assert time.monotonic() - killed < LEASE + 1.0, (
                "a SIGKILLed worker's job still counts as RUNNING after its lease"
            )
            await asyncio.sleep(0.05)  # observing another process's outcome
        # The broker requeued it with the dead connection: it waits, and runs again.
        assert await observer.count(queue_name, JobStatus.PENDING) == 1
        (again,) = await observer.dequeue_batch(1, timeout=5.0)
        assert again.id == job.id
        assert await observer.count(queue_name, JobStatus.RUNNING) == 1
        assert await observer.ack(again.id, lease_token=again.lease_token) is True
        assert await observer.count(queue_name) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for key in await store.keys(""):
            await store.delete(key)
        await store.close()
        await observer.delete_queues(if_empty=False)
        await observer.close()


async def _occurrences(amqp_url: str, queue_name: str, *, broker_claims: bool) -> list[int]:
    """Run three schedulers for a few seconds; return how often each occurrence was queued."""
    schedulers = [
        await _spawn(
            "scheduler_process.py", amqp_url, queue_name, "4", "1" if broker_claims else "0"
        )
        for _ in range(3)
    ]
    for proc in schedulers:
        assert await _line(proc) == "ready"
    for proc in schedulers:
        assert await asyncio.wait_for(proc.wait(), 30.0) == 0
    reader = RabbitMQTaskQueue(amqp_url, queue_name)
    try:
        fired: collections.Counter[float] = collections.Counter()
        while (job := await reader.dequeue()) is not None:
            fired[float(job.metadata["fire_time"])] += 1
            await reader.ack(job.id, lease_token=job.lease_token)
        return [fired[time_] for time_ in sorted(fired)]
    finally:
        await reader.delete_queues(if_empty=False)
        await reader.close()


async def test_three_schedulers_enqueue_each_occurrence_once(
    amqp_url: str, queue_name: str
) -> None:
    counts = await _occurrences(amqp_url, queue_name, broker_claims=True)
    assert len(counts) >= 3, f"only {len(counts)} occurrences fired in 4 s"
    assert counts == [1] * len(counts), f"occurrences enqueued {counts} times"


async def test_without_broker_claims_each_scheduler_enqueues_its_own_copy(
    amqp_url: str, queue_name: str
) -> None:
    """The control: with keys held in each process only, every occurrence comes 3 times."""
    counts = await _occurrences(amqp_url, queue_name, broker_claims=False)
    assert len(counts) >= 3
    assert max(counts) == 3, f"occurrences enqueued {counts} times"
