"""A queue-driven workflow step keeps its signature's `scheduled_at`."""

from __future__ import annotations

import time
from collections.abc import Sequence

from lexigram.contracts.tasks import Job, Result, TaskQueueError
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.decorators import task
from lexigram.tasks.execution import TaskWorker
from lexigram.tasks.workflows import InMemoryWorkflowStateStore, JobChain
from lexigram.tasks.workflows._advance import signature_of, stage_jobs

started: dict[str, float] = {}


@task
def first(x: int) -> int:
    started["first"] = time.time()
    return x + 1


@task
def later(x: int) -> int:
    started["later"] = time.time()
    return x * 10


class RecordingQueue(MemoryTaskQueue):
    """Keeps every job enqueued in bulk (the way workflows enqueue)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Job] = []

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Result[str, TaskQueueError]]:
        self.sent.extend(jobs)
        return await super().enqueue_many(jobs)


def test_a_steps_scheduled_at_reaches_its_job() -> None:
    step = later.s()
    step.scheduled_at = time.time() + 5
    (job,) = stage_jobs(
        "run", {"group": False, "steps": [signature_of(step)]}, 1, last=True, previous=(3,)
    )
    assert job.scheduled_at == step.scheduled_at
    assert job.args == (3,)


def test_a_step_without_a_delay_keeps_the_definition_it_always_had() -> None:
    assert "scheduled_at" not in signature_of(later.s())
    (job,) = stage_jobs(
        "run", {"group": False, "steps": [signature_of(later.s())]}, 0, last=True, previous=()
    )
    assert job.scheduled_at is None


async def test_a_delayed_first_step_waits_in_the_queue() -> None:
    queue, store = RecordingQueue(), InMemoryWorkflowStateStore()
    step = first.s(1)
    step.scheduled_at = time.time() + 60
    await JobChain(step, later.s()).apply_async(queue, store=store)
    (job,) = queue.sent
    assert job.scheduled_at == step.scheduled_at
    assert await queue.dequeue() is None  # not due yet


async def test_a_delayed_later_step_runs_no_earlier_than_asked() -> None:
    started.clear()
    queue, store = RecordingQueue(), InMemoryWorkflowStateStore()
    worker = TaskWorker("w", queue, {first.name: first, later.name: later})
    await worker.start()
    try:
        step = later.s()
        step.scheduled_at = time.time() + 0.5
        handle = await JobChain(first.s(1), step).apply_async(queue, store=store)
        assert await handle.result(timeout=10) == 20
    finally:
        await worker.stop()
    assert started["first"] < step.scheduled_at <= started["later"]
    assert [job.scheduled_at for job in queue.sent] == [None, step.scheduled_at]
