"""Worker failure paths on a real Redis: what the memory-queue unit tests check, where the
retries and the dead letter go through the server (its delayed set, its DLQ records)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.redis import RedisConnector, RedisDLQBackend, RedisTaskQueue
from lexigram.tasks.config import RetryConfig, TaskWorkerConfig
from lexigram.tasks.dlq import PersistentDeadLetterQueue
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.testing import HookRecorder

pytestmark = pytest.mark.redis

FAST_RETRY = RetryConfig(initial_delay=0.01, backoff_factor=2.0, max_delay=0.1, jitter=0.0)


async def test_a_cancelled_error_the_handler_raises_itself_is_retried_then_dead_lettered(
    make_redis_queue: Callable[..., RedisTaskQueue], connector: RedisConnector, key_prefix: str
) -> None:
    """Not released as a stopped run (five times, then dead-lettered as a crash loop)."""
    calls = 0

    async def leaky() -> None:
        # A library awaiting an inner task that was cancelled, letting its CancelledError out.
        nonlocal calls
        calls += 1
        inner = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        inner.cancel()
        await inner

    queue = make_redis_queue(visibility_timeout=5.0)
    dlq = PersistentDeadLetterQueue(
        backend=RedisDLQBackend(key_prefix=key_prefix, connector=connector)
    )
    hooks = HookRecorder()
    worker = TaskWorker(
        "w1",
        queue,
        {"leaky": leaky},
        TaskWorkerConfig(retry=FAST_RETRY, poll_interval=0.05),
        TaskWorkerServices(hooks=hooks, dead_letter_queue=dlq),
    )
    job = Job(name="leaky", max_retries=2)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    try:
        await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"), timeout=10)
    finally:
        await worker.stop()

    assert calls == 3
    record = await dlq.get(job.id)
    assert record is not None
    assert record.error.startswith(
        "CancelledError: the handler raised CancelledError without the worker cancelling it"
    )
    assert record.metadata["reason"] == "max_retries"
    assert record.attempt_count == 3
    stats = worker.get_stats()
    assert (stats.jobs_retried, stats.jobs_dead_lettered, stats.jobs_released) == (2, 1, 0)
    assert await queue.count(queue.queue_name) == 0
