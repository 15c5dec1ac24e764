"""A queue's rate limit honoured by real workers, where jobs are taken from the queue.

The achieved rate is measured from the moments handlers start and compared with the
limit within a tolerance; nothing asserts how fast the machine is. The bucket starts
full (a burst of `rate` jobs may start at once, by design), so the steady-state rate is
measured after the burst: (jobs after the burst) / (time from the end of the burst to
the last start).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.concurrency import GlobalRateLimiter, QueueRateLimiter
from lexigram.tasks.execution import TaskWorkerServices, WorkerPool

RATE = 20
TOLERANCE = 0.15


async def _measure(jobs: int, limiter_kind: str, pool_size: int) -> list[float]:
    queue = MemoryTaskQueue(queue_name="reports")
    if limiter_kind == "queue":
        limits = QueueRateLimiter()
        limits.add_limit("reports", rate=RATE, per=1.0)
        limiter = limits.for_queue("reports")
    else:
        limiter = GlobalRateLimiter(rate=RATE, per=1.0)
    starts: list[float] = []
    all_started = asyncio.Event()

    async def report(n: int) -> int:
        starts.append(time.monotonic())
        if len(starts) == jobs:
            all_started.set()
        return n

    await queue.enqueue_many([Job(name="report", args=(i,)) for i in range(jobs)])
    pool = WorkerPool(
        queue,
        {"report": report},
        size=pool_size,
        services=TaskWorkerServices(rate_limiter=limiter),
    )
    await pool.start()
    try:
        async with asyncio.timeout(jobs / RATE * 3 + 10):  # a safety net only
            await all_started.wait()
    finally:
        await pool.stop(drain=True)
    assert len(starts) == jobs
    assert pool.get_pool_stats()["total_jobs_succeeded"] == jobs
    return sorted(starts)


def _steady_rate(starts: list[float]) -> float:
    burst = RATE  # the bucket's capacity: started without waiting
    return (len(starts) - burst) / (starts[-1] - starts[burst - 1])


@pytest.mark.parametrize(("limiter_kind", "pool_size"), [("queue", 1), ("global", 3)])
async def test_worker_pool_honours_a_20_per_second_queue_limit(limiter_kind, pool_size):
    starts = await _measure(60, limiter_kind, pool_size)
    rate = _steady_rate(starts)
    assert RATE * (1 - TOLERANCE) <= rate <= RATE * (1 + TOLERANCE), rate
    # No more than the burst may start within the first refill interval.
    assert sum(1 for s in starts if s - starts[0] < 1 / RATE) <= RATE + 1


@pytest.mark.slow
async def test_worker_processes_200_jobs_at_20_per_second_in_about_ten_seconds():
    starts = await _measure(200, "queue", 2)
    rate = _steady_rate(starts)
    assert RATE * (1 - TOLERANCE) <= rate <= RATE * (1 + TOLERANCE), rate
    # 200 jobs, 20 of them in the initial burst: the other 180 need ~9 s at 20/s.
    elapsed = starts[-1] - starts[0]
    assert elapsed >= (200 - RATE) / RATE * (1 - TOLERANCE)
