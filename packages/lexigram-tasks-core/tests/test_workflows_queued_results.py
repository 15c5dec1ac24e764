"""Queue-driven workflows whose step results cannot travel on: not JSON, or too large.

Every backend fails such a run at one step, named alike by `WorkflowError.step_name`,
the step records of `WorkflowHandle.info()` and the run's error. These run on the
memory backend; tests-integration/cli/test_queued_workflows.py runs the same cases on
Redis, PostgreSQL, SQLite and RabbitMQ.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from lexigram.contracts.tasks import Job, WorkflowError, WorkflowStatus, max_payload_bytes
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.constants import WORKFLOW_STEP_KEY
from lexigram.tasks.decorators import task
from lexigram.tasks.execution import TaskWorker
from lexigram.tasks.workflows import InMemoryWorkflowStateStore, JobChain, JobChord, JobGroup
from lexigram.tasks.workflows._advance import step_succeeded
from lexigram.tasks.workflows._queued import QueuedWorkflow

calls: list[tuple[str, Any]] = []

# Over the default limit of a job's envelope alone; half of it fits twice in a list.
BIG = max_payload_bytes() + 1024
HALF = BIG // 2 + 1024


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def as_set(*values: int) -> set[int]:
    return set(values)


@task
def big(*_: Any) -> str:
    return "x" * BIG


@task
def half(*_: Any) -> str:
    return "x" * HALF


@task
def length(value: str | list[str]) -> int:
    return len(value)


@task
def never(*args: Any) -> None:
    calls.append(("never", args))


@task
def report(failure: dict[str, Any]) -> None:
    calls.append(("report", failure))


HANDLERS = {fn.name: fn for fn in (add, as_set, big, half, length, never, report)}


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    calls.clear()


async def _fails(
    workflow: QueuedWorkflow, *, reports: bool = False
) -> tuple[WorkflowError, list[tuple[str, str]], MemoryTaskQueue]:
    """Run `workflow` to its failure; its error, (name, status) per step, and its queue."""
    queue, store = MemoryTaskQueue(), InMemoryWorkflowStateStore()
    worker = TaskWorker("w", queue, HANDLERS)
    await worker.start()
    try:
        handle = await workflow.apply_async(queue, store=store)
        with pytest.raises(WorkflowError) as raised:
            await handle.result(timeout=5)
        for _ in range(200):  # the error callback runs after the run is marked failed
            if not reports or any(call[0] == "report" for call in calls):
                break
            await asyncio.sleep(0.01)
        for _ in range(200):  # a step running beside the failed one records its end too
            if worker.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        info = await handle.info()
    finally:
        await worker.stop()
    assert info.status is WorkflowStatus.FAILED
    assert raised.value.result is not None
    return raised.value, [(step.name, step.status) for step in info.steps], queue


async def test_a_result_that_is_not_json_fails_the_run_at_its_step() -> None:
    chain = JobChain(add.s(1, 2), as_set.s(), never.s(), on_error=report.s())
    error, steps, queue = await _fails(chain, reports=True)
    assert error.step_name == "as_set"
    assert "step 'as_set' (stage 1, member 0) returned a value of type 'set'" in str(error)
    assert "not JSON (Object of type set is not JSON serializable)" in str(error)
    assert steps == [("add", "succeeded"), ("as_set", "failed"), ("never", "waiting")]
    info = error.result
    assert info is not None
    failed = info.steps[1]
    assert failed.result is None
    assert failed.job_id is not None
    assert failed.error == info.error
    assert [call[1]["step"] for call in calls if call[0] == "report"] == ["as_set"]
    assert not [call for call in calls if call[0] == "never"]
    assert await queue.count("tasks") == 0


@pytest.mark.parametrize(
    ("workflow", "expected"),
    [
        # The last step's result is stored, not handed on: still JSON only, as the
        # stores of the other backends keep it.
        (
            lambda: JobChain(add.s(1, 2), as_set.s()),
            [("add", "succeeded"), ("as_set", "failed")],
        ),
        (lambda: JobGroup(as_set.s(1), add.s(1, 2)), [("as_set", "failed"), ("add", "succeeded")]),
        (
            lambda: JobChord(JobGroup(as_set.s(1)), length.s()),
            [("as_set", "failed"), ("length", "waiting")],
        ),
        # Not handed on (.si()), yet stored.
        (
            lambda: JobChain(as_set.s(1), add.si(1, 2)),
            [("as_set", "failed"), ("add", "waiting")],
        ),
    ],
    ids=["last-step", "group-member", "chord-member", "before-si"],
)
async def test_a_result_that_is_not_json_fails_the_run_wherever_the_step_is(
    workflow: Any, expected: list[tuple[str, str]]
) -> None:
    error, steps, _ = await _fails(workflow())
    assert error.step_name == "as_set"
    assert "is not JSON" in str(error)
    assert steps == expected


async def test_a_result_too_large_for_the_next_job_fails_the_run_at_its_step() -> None:
    chain = JobChain(add.s(1, 2), big.s(), length.s(), on_error=report.s())
    error, steps, queue = await _fails(chain, reports=True)
    assert error.step_name == "big"
    assert steps == [("add", "succeeded"), ("big", "failed"), ("length", "waiting")]
    info = error.result
    assert info is not None
    assert info.error is not None
    assert info.error.startswith(
        "TaskValidationError: the result of step 'big' cannot be passed on: the job of the "
        "next step 'length' was refused: job "
    )
    assert "max_payload_bytes)" in info.error
    assert info.steps[1].error == info.error
    assert info.steps[1].result is None  # not kept: the run failed on it
    assert [call[1]["step"] for call in calls if call[0] == "report"] == ["big"]
    assert await queue.count("tasks") == 0


async def test_a_large_result_that_is_not_handed_on_completes() -> None:
    queue, store = MemoryTaskQueue(), InMemoryWorkflowStateStore()
    worker = TaskWorker("w", queue, HANDLERS)
    await worker.start()
    try:
        last = await JobChain(add.s(1, 2), big.s()).apply_async(queue, store=store)
        immutable = await JobChain(big.s(), length.si("abc")).apply_async(queue, store=store)
        assert len(await last.result(timeout=5)) == BIG
        assert await immutable.result(timeout=5) == 3
    finally:
        await worker.stop()


async def test_group_results_too_large_together_fail_the_step_that_would_get_them() -> None:
    # Each member's result fits in a job; their list does not, and only the step that
    # completes the group sees it, after every member is recorded as succeeded.
    chord = JobChord(JobGroup(half.s(), half.s()), length.s(), on_error=report.s())
    error, steps, queue = await _fails(chord, reports=True)
    assert error.step_name == "length"
    assert steps == [("half", "succeeded"), ("half", "succeeded"), ("length", "failed")]
    info = error.result
    assert info is not None
    callback = info.steps[2]
    assert callback.error == info.error
    assert callback.error is not None
    assert callback.error.startswith(
        "TaskValidationError: the job of step 'length' was refused, so it never ran: job "
    )
    assert (callback.job_id, callback.attempts, callback.started_at) == (None, 0, None)
    reported = [call[1] for call in calls if call[0] == "report"]
    assert [(r["step"], r["stage"], r["member"], r["job_id"]) for r in reported] == [
        ("length", 1, 0, None)
    ]
    assert await queue.count("tasks") == 0


async def test_a_step_delivered_again_fails_its_run_once() -> None:
    queue, store = MemoryTaskQueue(), InMemoryWorkflowStateStore()
    handle = await JobChain(big.s(), length.s(), on_error=report.s()).apply_async(
        queue, store=store, workflow_id="twice"
    )
    leased = await queue.dequeue()
    assert leased is not None
    await queue.ack(leased.id, lease_token=leased.lease_token)
    place = leased.metadata[WORKFLOW_STEP_KEY]
    log = logging.getLogger(__name__)
    for _ in range(2):  # a duplicate delivery, or one whose ack was lost
        assert await step_succeeded(queue, leased, place, "x" * BIG, log)
    info = await handle.info()
    assert [(step.name, step.status) for step in info.steps] == [
        ("big", "failed"),
        ("length", "waiting"),
    ]
    assert await queue.count("tasks") == 1  # the error callback, once
    callback = await queue.dequeue()
    assert isinstance(callback, Job)
    assert callback.name == report.name
