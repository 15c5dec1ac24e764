"""The dashboard's workflows list: queue-driven runs open their run page; in-process ones say so.

The list and the run page read the same runs: a queue-driven run (``JobChain``) still
running is listed with a link to its page, as ``workflow show`` opens it, and a
resumable in-process chain (``TaskChain`` with a state store) is listed as in-process,
without a link to a page it has not got.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lexigram.contracts.tasks import TaskBackendSpec, WorkflowResult, WorkflowStatus
from lexigram.tasks import JobChain, _backends, task
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.dashboard._backend import DashboardBackend
from lexigram.tasks.workflows import InMemoryWorkflowStateStore


@task(name="listing.first")
async def first() -> int:
    return 1


@task(name="listing.second")
async def second(value: int) -> int:
    return value + 1


class _Backend:
    """A shared backend (not process-local) whose queue and run store tests can fill."""

    url_schemes = ()
    url_field = None

    def __init__(self) -> None:
        self.queue = MemoryTaskQueue(queue_name="tasks")
        self.store = InMemoryWorkflowStateStore()

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return self.queue

    def create_workflow_state_store(self, spec: TaskBackendSpec, /) -> object:
        return self.store


@pytest.fixture
def backend() -> Iterator[_Backend]:
    _backends.clear_backend_cache()
    made = _backends._cache["listing"] = _Backend()  # as if installed
    yield made
    _backends.clear_backend_cache()


async def test_running_runs_are_listed_and_only_queue_driven_ones_link(backend: _Backend) -> None:
    handle = await JobChain(first.s(), second.s()).apply_async(
        backend.queue, store=backend.store, workflow_id="queued-run"
    )
    await backend.store.save_state(
        "in-process-run",
        WorkflowResult(workflow_id="in-process-run", status=WorkflowStatus.RUNNING),
    )
    dashboard = DashboardBackend(TaskBackendSpec(type="listing", queue_name="tasks"))
    try:
        rows = await dashboard.workflows()
        assert rows is not None
        listed = {row["id"]: (row["kind"], row["linked"]) for row in rows}
        assert listed == {"queued-run": ("JobChain", True), "in-process-run": ("in-process", False)}
        # What the list links to opens.
        opened = await dashboard.workflow(handle.workflow_id)
        assert opened is not None
    finally:
        await dashboard.close()
