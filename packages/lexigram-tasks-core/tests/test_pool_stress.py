"""10,000 jobs through a WorkerPool with random failures and timeouts.

Every job must end exactly once, as completed or dead-lettered; nothing may stay in
flight; and the queue's internal structures must be empty afterwards (memory back to
its baseline). This is the regression test for "workers that never ack or nack" and
"failures that vanish".
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import RetryConfig, TaskWorkerConfig
from lexigram.tasks.execution import TaskWorkerServices, WorkerPool
from lexigram.tasks.results import InMemoryResultStore

JOBS = 10_000


class Outcomes:
    """Counts terminal hook events per job id and wakes the test when all are in."""

    def __init__(self, expected: int) -> None:
        self.completed: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.started = 0
        self.expected = expected
        self.all_done = asyncio.Event()

    async def emit(self, action: str, payload: Any) -> None:
        if action == "task.started":
            self.started += 1
        elif action == "task.completed":
            self.completed[payload.task_id] += 1
        elif action == "task.failed":
            self.failed[payload.task_id] += 1
        if sum(self.completed.values()) + sum(self.failed.values()) >= self.expected:
            self.all_done.set()


def assert_queue_empty(queue: MemoryTaskQueue) -> None:
    assert queue._jobs == {}
    assert queue._waiting == {}
    assert queue._in_flight == {}
    assert queue._ready == []
    assert queue._delayed == []
    assert queue._wakeups.waiters == set()


async def test_pool_ten_thousand_jobs_with_failures_and_timeouts_all_end_once() -> None:
    rng = random.Random(1234)
    queue = MemoryTaskQueue()
    outcomes = Outcomes(JOBS)
    store = InMemoryResultStore(max_size=JOBS)
    attempts: Counter[int] = Counter()
    # Per job: 0 = succeed, 1 = fail once then succeed, 2 = always fail,
    # 3 = time out once then succeed, 4 = always time out, 5 = sync handler succeeds.
    kinds = [rng.choices(range(6), weights=[70, 10, 5, 7, 3, 5])[0] for _ in range(JOBS)]

    async def work(index: int) -> int:
        attempts[index] += 1
        kind = kinds[index]
        if (kind == 1 and attempts[index] == 1) or kind == 2:
            msg = f"job {index} failed"
            raise RuntimeError(msg)
        if (kind == 3 and attempts[index] == 1) or kind == 4:
            await asyncio.sleep(1.0)  # far beyond the job's 20 ms timeout
        return index

    def sync_work(index: int) -> int:
        attempts[index] += 1
        return index

    baseline_tasks = len(asyncio.all_tasks())
    pool = WorkerPool(
        queue,
        {"work": work, "sync_work": sync_work},
        size=4,
        hooks=outcomes,
        config=TaskWorkerConfig(
            max_concurrent_tasks=100,
            retry=RetryConfig(initial_delay=0.001, max_delay=0.005, backoff_factor=2.0),
        ),
        services=TaskWorkerServices(result_store=store),
    )
    jobs = [
        Job(
            name="sync_work" if kind == 5 else "work",
            args=(index,),
            max_retries=2,
            # Short timeouts only where the test wants them: a busy loop may delay others.
            timeout=0.02 if kind in (3, 4) else 30.0,
        )
        for index, kind in enumerate(kinds)
    ]
    results = await queue.enqueue_many(jobs)
    assert all(r.is_ok() for r in results)
    await pool.start()
    await asyncio.wait_for(outcomes.all_done.wait(), 60)
    await pool.stop(drain=True, timeout=5)

    completed, failed = outcomes.completed, outcomes.failed
    assert set(completed).isdisjoint(failed)
    assert len(completed) + len(failed) == JOBS
    assert all(count == 1 for count in completed.values())
    assert all(count == 1 for count in failed.values())
    expected_failed = {job.id for job, kind in zip(jobs, kinds, strict=True) if kind in (2, 4)}
    assert set(failed) == expected_failed
    dlq = pool.dead_letter_queue
    assert dlq.get_stats()["current_size"] == len(expected_failed)
    for job, kind in zip(jobs, kinds, strict=True):
        assert attempts[job.args[0]] == {0: 1, 1: 2, 2: 3, 3: 2, 4: 3, 5: 1}[kind]
        result = await store.get(job.id)
        assert result is not None
        assert result.success is (kind not in (2, 4))

    # Nothing in flight anywhere; the queue's memory is back to its empty baseline.
    assert all(not w.is_busy() for w in pool.workers)
    assert await queue.count("tasks") == 0
    assert_queue_empty(queue)
    assert len(asyncio.all_tasks()) == baseline_tasks
    stats = pool.get_pool_stats()
    assert stats["total_jobs_succeeded"] == len(completed)
    assert stats["total_jobs_dead_lettered"] == len(failed)
