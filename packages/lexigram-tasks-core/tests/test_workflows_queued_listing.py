"""Listing queue-driven runs: `list_runs` on the in-memory store and `list_run_infos`."""

from __future__ import annotations

from typing import Any

from lexigram.contracts.tasks import (
    ListingWorkflowRunStoreProtocol,
    WorkflowRunStoreProtocol,
    WorkflowStatus,
)
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.decorators import task
from lexigram.tasks.workflows import InMemoryWorkflowStateStore, JobChain, JobGroup
from lexigram.tasks.workflows._queued import list_run_infos


@task
def step(x: int) -> int:
    return x


async def test_list_run_infos_lists_queue_driven_runs_newest_first() -> None:
    queue, store = MemoryTaskQueue(), InMemoryWorkflowStateStore()
    assert isinstance(store, ListingWorkflowRunStoreProtocol)
    older = await JobChain(step.s(1), step.s()).apply_async(queue, store=store)
    newer = await JobGroup(step.s(2), step.s(3)).apply_async(queue, store=store)
    failed = {"status": "failed", "error": "ValueError: no", "job_id": None}
    await store.fail_step(newer.workflow_id, 0, 1, record=failed)
    infos = await list_run_infos(store)
    assert infos is not None
    assert [(i.workflow_id, i.kind, i.status) for i in infos] == [
        (newer.workflow_id, "JobGroup", WorkflowStatus.FAILED),
        (older.workflow_id, "JobChain", WorkflowStatus.RUNNING),
    ]
    assert infos[0].failed_step == "0:1"
    assert [s.status for s in infos[1].steps] == ["queued", "waiting"]
    running = await list_run_infos(store, status=WorkflowStatus.RUNNING)
    assert [i.workflow_id for i in running or []] == [older.workflow_id]
    assert [i.workflow_id for i in await list_run_infos(store, limit=1) or []] == [
        newer.workflow_id
    ]


class RunsOnly(InMemoryWorkflowStateStore):
    """A run store without `list_runs` (a third-party store written before it).

    ``None`` hides the inherited method from a runtime protocol check on every Python
    (from 3.12 on such a check looks members up statically, so ``__getattr__`` tricks
    are not seen).
    """

    list_runs = None  # type: ignore[assignment]


async def test_a_store_that_cannot_list_gets_none() -> None:
    store: Any = RunsOnly()
    assert isinstance(store, WorkflowRunStoreProtocol)
    assert not isinstance(store, ListingWorkflowRunStoreProtocol)
    assert await list_run_infos(store) is None
