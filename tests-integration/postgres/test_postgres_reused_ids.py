"""A worker on PostgreSQL stores every result when some job ids already have one.

The worker acks a succeeded job and stores its result in one statement, which inserts
the results and falls back to an upsert for a batch in which a job id has a result
already (its id run again: a dead letter retried, an id the app chose). Here a worker
drains jobs of which every tenth reuses such an id, in batches that mix both kinds: every
job is acked once and every stored result is the new run's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from lexigram.contracts.tasks import Job, JobResult, TaskBackendSpec
from lexigram.tasks.backends.postgres import PostgresTaskQueue, backend
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import TaskWorkerServices, WorkerPool

pytestmark = [pytest.mark.postgres]

JOBS = 600


async def test_results_of_reused_job_ids_replace_the_earlier_ones(
    make_pg_queue: Callable[..., PostgresTaskQueue],
    postgres_dsn: str,
    pg_schema: str,
    unique_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = make_pg_queue()
    spec = TaskBackendSpec(
        type="postgres",
        url=postgres_dsn,
        options={"schema": pg_schema, "namespace": f"reused-{unique_name}"},
    )
    store = backend.create_result_store(spec)
    jobs = [Job(name="double", args=(n,)) for n in range(JOBS)]
    reused = jobs[::10]
    for job in reused:  # an earlier run of the same id left its result
        await store.store(job.id, JobResult(success=True, data="the earlier run", id=job.id))
    await queue.enqueue_many(jobs)

    ran: list[int] = []
    all_ran = asyncio.Event()

    async def double(n: int) -> int:
        ran.append(n)
        if len(ran) == JOBS:
            all_ran.set()
        return 2 * n

    services = TaskWorkerServices(result_store=store)
    config = TaskWorkerConfig(max_concurrent_tasks=100, poll_interval=0.2)
    pool = WorkerPool(queue, {"double": double}, size=1, config=config, services=services)
    await pool.start()
    try:
        await asyncio.wait_for(all_ran.wait(), 60)
    finally:
        await pool.stop()  # settles what is in flight
    try:
        for n, job in enumerate(jobs):
            stored = await store.get(job.id)
            assert stored is not None, f"job {n} has no result"
            assert stored.data == 2 * n, f"job {n} kept {stored.data!r}"
        assert sorted(ran) == list(range(JOBS)), "a job ran twice"
        left = await queue.count(queue.queue_name)
        assert left == 0, f"{left} job(s) not acked"
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [], errors
    finally:
        await store.close()
