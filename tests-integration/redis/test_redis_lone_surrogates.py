"""A job whose argument holds a lone surrogate, on a real Redis: enqueued, run, its result
stored and read back. Such strings are what Python makes of file names with invalid UTF-8
bytes (surrogateescape); no UTF-8 client can send them as they are, and the enqueue used to
raise UnicodeEncodeError and the result store to fail its whole batch."""

from __future__ import annotations

import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.redis import RedisConnector, RedisResultStore, RedisTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.decorators import task
from lexigram.tasks.execution import HandlerRegistry, TaskWorker, TaskWorkerServices

pytestmark = pytest.mark.redis


async def test_a_job_with_a_lone_surrogate_runs_and_its_result_reads_back(
    connector: RedisConnector, key_prefix: str
) -> None:
    @task(name="surrogate_echo")
    async def echo(name: str) -> dict[str, str]:
        return {"seen": name, "upper": name.upper()}

    queue = RedisTaskQueue(queue_name="tasks", key_prefix=key_prefix, connector=connector)
    results = RedisResultStore(key_prefix=key_prefix, connector=connector)
    registry = HandlerRegistry()
    registry.register(echo.name, echo)
    worker = TaskWorker(
        "surrogates-it",
        queue,
        registry,
        TaskWorkerConfig(poll_interval=0.05),
        TaskWorkerServices(result_store=results),
    )
    name = b"scan-\xff-\xe9t\xe9.pdf".decode("utf-8", "surrogateescape")
    job_id = (await queue.enqueue(Job(name="surrogate_echo", args=(name,)))).unwrap()
    await worker.start()
    try:
        result = await results.wait(job_id, timeout=10)
    finally:
        await worker.stop()
    assert result is not None
    assert result.success, result.error
    assert result.data == {"seen": name, "upper": name.upper()}
