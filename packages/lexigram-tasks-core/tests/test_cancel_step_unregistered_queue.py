"""Cancelling a workflow step through a queue object with no run store registered.

`JobHandle(queue, id).cancel()` on another object of the same queue (a second
``open_queue(spec)``, an admin script's) used to remove a waiting step's job without
recording the step: the run stayed RUNNING forever and showed the step queued for a job
that no longer existed. Now nothing is removed and the error says what to do; once the
run store is registered for that object, the same cancel ends the step and its run.
"""

from __future__ import annotations

import pytest

from lexigram.contracts.tasks import (
    CancelOutcome,
    Job,
    TaskConfigurationError,
    WorkflowStatus,
)
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.decorators import task
from lexigram.tasks.handles import JobHandle
from lexigram.tasks.workflows import (
    InMemoryWorkflowStateStore,
    JobChain,
    register_workflow_store,
)


@task
def first(x: int) -> int:
    return x


@task
def later(x: int) -> int:
    return x


class OtherObject:
    """A second queue object over the same jobs, registered nowhere (delete-only)."""

    def __init__(self, queue: MemoryTaskQueue) -> None:
        self._queue = queue
        self.queue_name = queue.queue_name

    async def get_job(self, job_id: str) -> Job | None:
        return await self._queue.get_job(job_id)

    async def delete_job(self, job_id: str) -> bool:
        return await self._queue.delete_job(job_id)


class OtherCancellableObject(OtherObject):
    """As `OtherObject`, for a backend that can cancel (`CancellableQueueProtocol`)."""

    async def cancel(self, job_id: str) -> CancelOutcome:
        return await self._queue.cancel(job_id)


@pytest.mark.parametrize("kind", [OtherObject, OtherCancellableObject])
async def test_a_step_is_cancelled_only_where_its_run_can_be_ended(kind: type[OtherObject]) -> None:
    queue, store = MemoryTaskQueue(queue_name="wfq"), InMemoryWorkflowStateStore()
    handle = await JobChain(first.s(1), later.s()).apply_async(queue, store=store)
    job_id = (await handle.info()).steps[0].job_id
    assert job_id is not None
    other = kind(queue)

    with pytest.raises(TaskConfigurationError) as refused:
        await JobHandle(other, job_id).cancel()  # type: ignore[arg-type]
    message = refused.value.message
    assert "\n" not in message
    assert f"Job {job_id} is a step of workflow {handle.workflow_id!r}" in message
    assert "register_workflow_store(queue, store)" in message
    assert f"lexigram-tasks job cancel {job_id} --queue wfq" in message
    # Nothing was removed: the step still waits, and its run still runs.
    assert await queue.get_job(job_id) is not None
    info = await handle.info()
    assert info.status is WorkflowStatus.RUNNING
    assert info.steps[0].status == "queued"

    # With the run store registered for that object, the same cancel ends the run.
    register_workflow_store(other, store)  # type: ignore[arg-type]
    assert await JobHandle(other, job_id).cancel() is CancelOutcome.REMOVED  # type: ignore[arg-type]
    assert await queue.get_job(job_id) is None
    info = await handle.info()
    assert info.status is WorkflowStatus.FAILED
    assert [(s.name, s.status) for s in info.steps] == [
        ("first", "cancelled"),
        ("later", "waiting"),
    ]


async def test_a_job_that_is_no_step_is_cancelled_on_any_queue_object() -> None:
    queue = MemoryTaskQueue(queue_name="plain")
    job_id = "plain-job"
    await queue.enqueue(Job(id=job_id, name="first", args=(1,)))
    handle: JobHandle[int] = JobHandle(OtherObject(queue), job_id)  # type: ignore[arg-type]
    assert await handle.cancel() is CancelOutcome.REMOVED
    assert await queue.get_job(job_id) is None
