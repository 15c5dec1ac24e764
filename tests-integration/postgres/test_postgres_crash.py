"""SIGKILLed worker processes lose no job: every job completes and nothing stays stuck.

Three worker processes (one `WorkerPool` worker each, 10 jobs at a time, 2 s leases)
drain a queue while one of them is SIGKILLed and replaced every second. Jobs in
flight in a killed process come back when their lease expires.
"""

from __future__ import annotations

import asyncio
import random
import signal

import asyncpg
import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.postgres import PostgresTaskQueue

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

JOBS = 600
WORKERS = 3
CONCURRENCY = 10
KILLS = 5


async def _wait_until_done(conn: asyncpg.Connection, table: str, prefix: str, queue) -> int:
    """Observe the database until every job has completed and the queue is empty."""
    for _ in range(600):  # bounded: 60 s
        done = await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE job_key LIKE $1 || '%' AND runs > 0",  # noqa: S608
            prefix,
        )
        if done == JOBS and await queue.count(queue.queue_name) == 0:
            return int(done)
        await asyncio.sleep(0.1)  # polling an external system's state, not synchronising
    return int(done)


async def test_sigkilled_workers_lose_no_job(
    make_pg_queue, unique_name, completions, spawn_worker, pg_conn
):
    queue: PostgresTaskQueue = make_pg_queue()
    queue_name = queue.queue_name
    prefix = f"{unique_name}-"
    jobs = [Job(name="record", args=(f"{prefix}{i}",), max_retries=10) for i in range(JOBS)]
    assert all(r.is_ok() for r in await queue.enqueue_many(jobs))
    procs = [await spawn_worker(queue_name, pause=0.25) for _ in range(WORKERS)]
    for proc in procs:  # every worker is consuming before the first kill
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30.0) == b"started\n"
    rng = random.Random(7)
    for _ in range(KILLS):
        await asyncio.sleep(1.0)  # the kill schedule
        victim = rng.randrange(WORKERS)
        procs[victim].send_signal(signal.SIGKILL)
        await procs[victim].wait()
        procs[victim] = await spawn_worker(queue_name, pause=0.25)

    assert await _wait_until_done(pg_conn, completions, prefix, queue) == JOBS
    row = await pg_conn.fetchrow(
        f"SELECT sum(starts) AS starts, sum(runs) AS runs, min(runs) AS least "  # noqa: S608
        f"FROM {completions} WHERE job_key LIKE $1 || '%'",
        prefix,
    )
    restarted, duplicates = row["starts"] - JOBS, row["runs"] - JOBS
    # The kills did interrupt jobs, which were delivered again and completed...
    assert restarted >= 1, "no job was in flight in a killed worker: the test proved nothing"
    assert row["least"] >= 1
    # ...and only jobs in flight in a killed process may have run to the end twice.
    assert 0 <= duplicates <= KILLS * CONCURRENCY
    assert await queue.count(queue.queue_name) == 0
    assert await queue.get_task_count() == 0
