"""A succeeded job's slot goes to the next job while its result is stored (and, after a
handler that ran a while, while it is acked).

The ack and the result's write are round trips to the backend; the next round of jobs need
not wait for them. Still, nothing finishes unacked or unstored: the result is stored before
the ack (a worker that dies between the two runs the job again instead of leaving it acked
without a result), stopping (and ``--burst``) waits for both, a job counts as in flight
until it is acked, and a store or an ack that hangs throttles the intake after
`max_concurrent_tasks` finishing jobs. A short job whose result is not stored keeps its
slot through its bare ack, so that the refill leases for the many slots one round of acks
frees.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lexigram.contracts.tasks import Job, JobResult
from lexigram.tasks import Reject, task
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.execution._settle import EARLY_RELEASE_SECONDS


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

    async def wait(
        self, job_id: str, *, timeout: float = 30.0, poll_interval: float = 0.5
    ) -> JobResult | None:
        del timeout, poll_interval  # the tests read `stored` once the writes are let through
        return self.stored.get(job_id)

    async def cleanup_expired(self) -> int:
        return 0

    async def get_completed(self, limit: int | None = None) -> list[JobResult]:
        return [result for result in self.stored.values() if result.success][:limit]

    async def get_failed(self, limit: int | None = None) -> list[JobResult]:
        return [result for result in self.stored.values() if not result.success][:limit]

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


def _worker(queue: MemoryTaskQueue, store: GatedStore, handler: Any, slots: int) -> TaskWorker:
    """A worker with `slots` slots running `handler` as its only task, storing into `store`."""
    return TaskWorker(
        "w1",
        queue,
        {handler.__name__: handler},
        # No jobs held ahead: the slots' accounting is what these tests count.
        TaskWorkerConfig(max_concurrent_tasks=slots, poll_interval=0.01, prefetch_window=0.0),
        TaskWorkerServices(result_store=store),
    )


async def test_the_next_job_runs_while_the_previous_result_is_stored() -> None:
    queue = MemoryTaskQueue()
    store = GatedStore()
    started: list[int] = []

    async def step(n: int) -> int:
        started.append(n)
        return n

    worker = _worker(queue, store, step, 1)
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
        assert await queue.count(queue.queue_name) == 3  # none acked before its result
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

    worker = _worker(queue, store, quick, 4)
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


class GatedAckQueue(MemoryTaskQueue):
    """An in-memory queue whose acks wait until it is opened (a slow backend's round trip)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.acks_waiting = 0
        self.answer: bool | None = None  # what every ack returns instead of the queue's own

    async def ack(self, task_id: str, *, lease_token: str | None = None) -> bool:
        self.acks_waiting += 1
        await self.gate.wait()
        self.acks_waiting -= 1
        held = await super().ack(task_id, lease_token=lease_token)
        return held if self.answer is None else self.answer


async def test_the_next_job_runs_while_the_ack_of_a_job_that_ran_a_while_travels() -> None:
    queue = GatedAckQueue()
    store = GatedStore()
    store.gate.set()
    started: list[int] = []

    async def step(n: int) -> int:
        started.append(n)
        await asyncio.sleep(2 * EARLY_RELEASE_SECONDS)
        return n

    worker = _worker(queue, store, step, 1)
    jobs = [Job(name="step", args=(n,)) for n in range(3)]
    await queue.enqueue_many(jobs)
    await worker.start()
    try:
        # One slot; the first ack is held back, yet the slot moved on once (at most
        # max_concurrent_tasks jobs finish at once); each result is stored before its ack.
        await _until(lambda: started == [0, 1])
        await _until(lambda: queue.acks_waiting == 2)
        await asyncio.sleep(0.05)
        assert started == [0, 1]
        assert worker.in_flight == 2
        assert set(store.stored) == {jobs[0].id, jobs[1].id}
        queue.gate.set()
        await _until(lambda: len(store.stored) == 3)
        assert [store.stored[job.id].data for job in jobs] == [0, 1, 2]
        await _until(lambda: worker.in_flight == 0)
        assert worker.stats.jobs_succeeded == 3
    finally:
        await worker.stop()


async def test_a_short_job_keeps_its_slot_until_its_ack_returns() -> None:
    queue = GatedAckQueue()
    started: list[int] = []

    async def step(n: int) -> int:
        started.append(n)
        return n

    # Its result is not stored: a bare ack.
    worker = TaskWorker(
        "w1",
        queue,
        {"step": task(store_result=False)(step)},
        TaskWorkerConfig(max_concurrent_tasks=1, poll_interval=0.01, prefetch_window=0.0),
    )
    jobs = [Job(name="step", args=(n,)) for n in range(2)]
    await queue.enqueue_many(jobs)
    await worker.start()
    try:
        await _until(lambda: queue.acks_waiting == 1)
        await asyncio.sleep(0.05)
        assert started == [0]  # the one slot waits for the ack
        queue.gate.set()
        await _until(lambda: worker.stats.jobs_succeeded == 2)
        assert started == [0, 1]
    finally:
        await worker.stop()


@pytest.mark.parametrize("runs", [0.0, 2 * EARLY_RELEASE_SECONDS])
async def test_a_job_whose_ack_finds_its_lease_gone_gives_back_no_second_slot(
    runs: float,
) -> None:
    queue = GatedAckQueue()
    queue.answer = False  # every ack finds the lease gone (another worker has the job)
    store = GatedStore()
    store.gate.set()
    started: list[int] = []

    async def step(n: int) -> int:
        started.append(n)
        await asyncio.sleep(runs)
        return n

    worker = _worker(queue, store, step, 2)
    await queue.enqueue_many([Job(name="step", args=(n,)) for n in range(2)])
    await worker.start()
    try:
        await _until(lambda: queue.acks_waiting == 2)
        queue.gate.set()
        await _until(lambda: worker.in_flight == 0)
        # Each run completed and stored its result before its ack found the lease gone
        # (the current delivery's settling replaces it).
        assert len(store.stored) == 2
        assert worker._finishing == 0
        await queue.enqueue_many([Job(name="step", args=(n,)) for n in range(2, 6)])
        await _until(lambda: len(started) == 6)
        await _until(lambda: worker.in_flight == 0)
        assert worker._finishing == 0
    finally:
        await worker.stop()


async def test_a_dead_letter_has_its_failed_result_before_its_ack() -> None:
    """A worker that dies between the two leaves a dead letter whose status reads failed."""
    queue = GatedAckQueue()
    store = GatedStore()
    store.gate.set()

    async def refuse() -> None:
        reason = "not today"
        raise Reject(reason)

    worker = _worker(queue, store, refuse, 1)
    job = Job(name="refuse")
    await queue.enqueue(job)
    await worker.start()
    try:
        await _until(lambda: queue.acks_waiting == 1)
        stored = store.stored.get(job.id)
        assert stored is not None
        assert not stored.success
        queue.gate.set()
        await _until(lambda: worker.in_flight == 0)
    finally:
        await worker.stop()
