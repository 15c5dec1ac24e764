"""A workflow step whose job is cancelled is recorded, and shown, as cancelled.

It used to be recorded as ``failed`` with the error "cancelled before it ran" or "Job
<id> (...) was cancelled.", so a cancellation read as a failure of the task. The step is
now ``cancelled``; its run is FAILED as before (a cancelled step ends it, and a run's
status is a `WorkflowStatus`), `WorkflowError.step_name` still names the step, and a
run stored earlier, whose cancelled step says ``failed``, reads as it always did.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from lexigram.contracts.tasks import CancelOutcome, WorkflowError, WorkflowStatus
from lexigram.tasks.admin import workflow_dict
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli import _workflow
from lexigram.tasks.decorators import task
from lexigram.tasks.execution import TaskWorker
from lexigram.tasks.handles import JobHandle
from lexigram.tasks.workflows import InMemoryWorkflowStateStore, JobChain, WorkflowHandle
from lexigram.tasks.workflows._queued import run_info

started = asyncio.Event()
failures: list[dict[str, Any]] = []


@task
def first(x: int) -> int:
    return x


@task
async def held(x: int) -> int:
    started.set()
    await asyncio.sleep(30)  # cancelled long before
    return x


@task
def later(x: int) -> int:
    return x


@task
def alert(failure: dict[str, Any]) -> None:
    failures.append(failure)


HANDLERS = {fn.name: fn for fn in (first, held, later, alert)}


@pytest.fixture(autouse=True)
def _fresh() -> None:
    global started  # noqa: PLW0603 - an event binds to the loop of its first wait
    started = asyncio.Event()
    failures.clear()


async def _job_of(handle: WorkflowHandle, stage: int) -> str:
    """The id of the job of `stage` (one step), once the run has recorded it."""
    for _ in range(500):
        job_id = (await handle.info()).steps[stage].job_id
        if job_id is not None:
            return job_id
        await asyncio.sleep(0.01)
    msg = f"stage {stage} was never enqueued"
    raise AssertionError(msg)


async def test_a_step_cancelled_before_it_ran_is_recorded_as_cancelled() -> None:
    queue, store = MemoryTaskQueue(queue_name="jobs"), InMemoryWorkflowStateStore()
    handle = await JobChain(first.s(1), later.s()).apply_async(queue, store=store)
    job_id = await _job_of(handle, 0)
    assert await JobHandle(queue, job_id).cancel() is CancelOutcome.REMOVED
    info = await handle.info()
    assert info.status is WorkflowStatus.FAILED
    step = info.steps[0]
    assert (step.name, step.status, step.error, step.job_id) == (
        "first",
        "cancelled",
        "cancelled before it ran",
        job_id,
    )
    assert info.steps[1].status == "waiting"
    with pytest.raises(WorkflowError, match="failed at step 'first': cancelled before it ran") as e:
        await handle.result(timeout=1)
    assert e.value.step_name == "first"


async def test_a_step_cancelled_while_it_ran_is_recorded_as_cancelled() -> None:
    queue, store = MemoryTaskQueue(queue_name="jobs"), InMemoryWorkflowStateStore()
    worker = TaskWorker("w", queue, HANDLERS)
    await worker.start()
    try:
        chain = JobChain(first.s(1), held.s(), later.s(), on_error=alert.s())
        handle = await chain.apply_async(queue, store=store)
        job_id = await _job_of(handle, 1)
        await asyncio.wait_for(started.wait(), 5)
        assert await JobHandle(queue, job_id).cancel() is CancelOutcome.STOPPING
        with pytest.raises(WorkflowError) as raised:
            await handle.result(timeout=5)
        assert raised.value.step_name == "held"
        for _ in range(200):  # the error callback is a job of its own
            if failures:
                break
            await asyncio.sleep(0.01)
    finally:
        await worker.stop()
    info = await handle.info()
    assert [(s.name, s.status) for s in info.steps] == [
        ("first", "succeeded"),
        ("held", "cancelled"),
        ("later", "waiting"),
    ]
    error = f"Job {job_id} ('held') was cancelled."
    assert (info.steps[1].error, info.steps[1].job_id, info.error) == (error, job_id, error)
    assert [(f["step"], f["job_id"], f["error"]) for f in failures] == [("held", job_id, error)]


def _stored_run(status: str) -> dict[str, Any]:
    """A run as a store returns it, its first step ended with `status` by a cancellation."""
    return {
        "workflow_id": "wf-old",
        "definition": {
            "kind": "JobChain",
            "stages": [
                {"group": False, "steps": [{"name": "first"}]},
                {"group": False, "steps": [{"name": "later"}]},
            ],
        },
        "status": "failed",
        "steps": {
            "0:0": {
                "job_id": "job-1",
                "name": "first",
                "status": status,
                "result": None,
                "error": "cancelled before it ran",
                "attempts": 1,
                "started_at": None,
                "finished_at": 2.0,
            }
        },
        "jobs": {"0": {"job_ids": ["job-1"], "queue": "jobs", "enqueued_at": 1.0}},
        "result": None,
        "error": "cancelled before it ran",
        "created_at": 1.0,
        "updated_at": 2.0,
    }


@pytest.mark.parametrize("status", ["cancelled", "failed"])
async def test_workflow_show_prints_the_error_of_a_cancelled_step(
    status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # "failed": a run stored before cancelled steps were told apart still reads as it was.
    info = run_info(_stored_run(status))
    assert [(s.name, s.status) for s in info.steps] == [("first", status), ("later", "waiting")]
    _workflow._print(info, workflow_dict(info))  # the command's own printer
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "error (step 0.0): cancelled before it ran"
    assert lines[2] == f"  0.0  first  {status}  job job-1  {json.dumps('cancelled before it ran')}"
    assert lines[3] == "  1.0  later  waiting"
