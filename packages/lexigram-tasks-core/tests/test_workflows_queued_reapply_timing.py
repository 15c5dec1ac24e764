"""Re-applying a workflow id whose steps carry a `scheduled_at` is still a no-op.

A step's delay is usually computed when the workflow is built (``time.time() + 5``),
so a producer that retries ``apply_async`` sends another value: that is the same
workflow, not another one using its id.
"""

from __future__ import annotations

import time

import pytest

from lexigram.contracts.tasks import WorkflowError
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.decorators import task
from lexigram.tasks.workflows import InMemoryWorkflowStateStore, JobChain, QueuedWorkflow


@task
def fetch(a: str, **options: object) -> list[str]:
    return [a]


@task
def count(p: list[str]) -> int:
    return len(p)


@task
def alert(failure: dict[str, object]) -> None:
    return None


def _workflow(delay: float, *, first_delay: float | None = None) -> QueuedWorkflow:
    first = fetch.s("summer")
    first.scheduled_at = first_delay
    remind = count.s()
    remind.scheduled_at = time.time() + delay
    on_error = alert.s()
    on_error.scheduled_at = time.time() + delay
    return JobChain(first, remind, on_error=on_error)


async def test_a_retried_apply_with_new_step_times_is_a_no_op() -> None:
    queue, store = MemoryTaskQueue(), InMemoryWorkflowStateStore()
    first = await _workflow(5, first_delay=time.time() + 1).apply_async(
        queue, store=store, workflow_id="order-1"
    )
    stored = await store.load_run("order-1")
    assert stored is not None
    again = await _workflow(6, first_delay=time.time() + 2).apply_async(
        queue, store=store, workflow_id="order-1"
    )
    assert again.workflow_id == first.workflow_id
    assert await queue.count("tasks") == 1, "the retry enqueued the first step again"
    kept = await store.load_run("order-1")
    assert kept is not None
    # The run keeps the times of the apply that created it.
    assert kept["definition"] == stored["definition"]
    assert "scheduled_at" in kept["definition"]["stages"][1]["steps"][0]
    # Only the signature's own time is left out: an argument called "scheduled_at" is
    # the call's data, and still tells two workflows apart.
    await JobChain(fetch.s("a", scheduled_at=1)).apply_async(
        queue, store=store, workflow_id="order-2"
    )
    with pytest.raises(WorkflowError, match="already used by another workflow"):
        await JobChain(fetch.s("a", scheduled_at=2)).apply_async(
            queue, store=store, workflow_id="order-2"
        )
