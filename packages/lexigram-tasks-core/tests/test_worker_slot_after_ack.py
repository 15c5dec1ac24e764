"""An acked job's slot goes to the next job while its result is being stored.

Storing a result is a round trip to the backend; the next round of jobs need not wait for
it. Still, nothing finishes unstored: stopping (and ``--burst``) waits for the stores, a
job counts as in flight until its result is stored, and a store that hangs throttles the
intake after `max_concurrent_tasks` finishing jobs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lexigram.contracts.tasks import Job, JobResult
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices


class GatedStore:
    """A result store (not the in-process one) whose writes wait until it is opened."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.stored: dict[str, JobResult] = {}
        self.waiting = 0

    async def store(self, job_id: str, result: JobResult) -> None:
        self.waiting += 1
        await self.gate.wait()
        self.waiting -= 1
        self.stored[job_id] = result

    async def get(self, job_id: str) -> JobResult | None:
        return self.stored.get(job_id)

    async def delete(self, job_id: str) -> bool:
        return self.stored.pop(job_id, None) is not None

    async def exists(self, job_id: str) -> bool:
        return job_id in self.stored

    async def clear(self) -> None:
        self.stored.clear()


async def _until(condition: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.005)


async def test_the_next_job_runs_while_the_previous_result_is_stored() -> None:
    queue = MemoryTaskQueue()
    store = GatedStore()
    started: list[int] = []

    async def step(n: int) -> int:
        started.append(n)
        return n

    worker = TaskWorker(
        "w1",
        queue,
        {"step": step},
        TaskWorkerConfig(max_concurrent_tasks=1, poll_interval=0.01),
        TaskWorkerServices(result_store=store),  # type: ignore[arg-type]
    )
    jobs = [Job(name="step", args=(n,)) for n in range(3)]
    await queue.enqueue_many(jobs)
    await worker.start()
    try:
        # One slot, and the first result cannot be stored yet: the slot still moved on,
        # once (at most max_concurrent_tasks jobs wait for their store).
        await _until(lambda: started == [0, 1])
        await _until(lambda: store.waiting == 2)
        await asyncio.sleep(0.05)
        assert started == [0, 1]
        assert worker.in_flight == 2  # finishing jobs count until their result is stored
        assert await queue.count(queue.queue_name) == 1
        store.gate.set()
        await _until(lambda: len(store.stored) == 3)
        assert [store.stored[job.id].data for job in jobs] == [0, 1, 2]
        await _until(lambda: worker.in_flight == 0)
    finally:
        await worker.stop()


async def test_stopping_waits_for_results_still_being_stored() -> None:
    queue = MemoryTaskQueue()
    store = GatedStore()

    async def quick() -> str:
        return "done"

    worker = TaskWorker(
        "w1",
        queue,
        {"quick": quick},
        TaskWorkerConfig(max_concurrent_tasks=4, poll_interval=0.01),
        TaskWorkerServices(result_store=store),  # type: ignore[arg-type]
    )
    job = Job(name="quick")
    await queue.enqueue(job)
    await worker.start()
    await _until(lambda: store.waiting == 1)
    assert worker.is_busy()
    stopping = asyncio.create_task(worker.stop(drain=True))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # the result is not stored yet
    store.gate.set()
    await stopping
    assert store.stored[job.id].data == "done"
    assert await queue.count(queue.queue_name) == 0
