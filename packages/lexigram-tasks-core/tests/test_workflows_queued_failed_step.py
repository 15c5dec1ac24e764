"""The step a failed run names is the one that failed it, not the first in stage order.

In a group, two members can fail; the store keeps the first `fail_step` to arrive as
the one that failed the run (its error is the run's, ``on_error`` gets it), and
`WorkflowHandle.result()` must name that same step.
"""

from __future__ import annotations

from typing import Any

import pytest

from lexigram.contracts.tasks import WorkflowError, WorkflowStatus
from lexigram.tasks.admin import workflow_dict
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.decorators import task
from lexigram.tasks.workflows import (
    InMemoryWorkflowStateStore,
    JobChord,
    JobGroup,
    WorkflowHandle,
)


@task
def first(x: int) -> int:
    return x


@task
def second(x: int) -> int:
    return x


@task
def report(xs: list[int]) -> int:
    return len(xs)


def _failed(error: str) -> dict[str, Any]:
    return {"status": "failed", "error": error, "job_id": None}


async def _fail_member_1_then_0(store: InMemoryWorkflowStateStore) -> WorkflowHandle:
    queue = MemoryTaskQueue()
    chord = JobChord(JobGroup(first.s(1), second.s(2)), report.s())
    handle = await chord.apply_async(queue, store=store)
    # Member 1 fails first (it fails the run), member 0 later: stage order would name 0.
    assert await store.fail_step(handle.workflow_id, 0, 1, record=_failed("ValueError: 1"))
    assert not await store.fail_step(handle.workflow_id, 0, 0, record=_failed("ValueError: 0"))
    return handle


async def test_result_names_the_step_that_failed_the_run() -> None:
    store = InMemoryWorkflowStateStore()
    handle = await _fail_member_1_then_0(store)
    info = await handle.info()
    assert (info.status, info.error, info.failed_step) == (
        WorkflowStatus.FAILED,
        "ValueError: 1",
        "0:1",
    )
    failing = info.failing_step()
    assert failing is not None
    assert (failing.name, failing.member) == ("second", 1)
    with pytest.raises(WorkflowError) as caught:
        await handle.result(timeout=1)
    assert caught.value.step_name == "second"
    assert "failed at step 'second': ValueError: 1" in str(caught.value)


class SilentStore(InMemoryWorkflowStateStore):
    """A store from before ``failed_step``: its runs do not say which step failed them."""

    async def load_run(self, workflow_id: str) -> dict[str, Any] | None:
        run = await super().load_run(workflow_id)
        if run is not None:
            run.pop("failed_step", None)
        return run


async def test_a_store_that_does_not_name_the_step_falls_back_to_stage_order() -> None:
    store = SilentStore()
    handle = await _fail_member_1_then_0(store)
    assert (await handle.info()).failed_step is None
    with pytest.raises(WorkflowError) as caught:
        await handle.result(timeout=1)
    assert caught.value.step_name == "first"


async def test_a_run_that_has_not_failed_names_no_step() -> None:
    store = InMemoryWorkflowStateStore()
    handle = await JobGroup(first.s(1)).apply_async(MemoryTaskQueue(), store=store)
    info = await handle.info()
    assert info.failed_step is None
    assert info.failing_step() is None


async def test_workflow_show_and_the_dashboard_name_the_same_step() -> None:
    store = InMemoryWorkflowStateStore()
    handle = await _fail_member_1_then_0(store)
    data = workflow_dict(await handle.info())
    # What `workflow show` prints ("error (step 0.1): ...") and --json and the dashboard read.
    assert (data["failed_step"], data["error"]) == ("0.1", "ValueError: 1")
