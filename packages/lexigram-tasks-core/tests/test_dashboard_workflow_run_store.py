"""The dashboard's workflows view with a store that keeps runs but cannot list them.

The provider accepts a workflow store implementing `WorkflowRunStoreProtocol` alone
(queue-driven runs, opened by id); only `WorkflowStateStoreProtocol` has `list_active`.
The workflows view then says the active runs are not recorded where it can list them,
instead of failing with an AttributeError.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lexigram.contracts.tasks import (
    TaskBackendSpec,
    WorkflowRunStoreProtocol,
    WorkflowStateStoreProtocol,
)
from lexigram.tasks import _backends
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.dashboard._app import Dashboard
from lexigram.tasks.dashboard._backend import DashboardBackend
from lexigram.tasks.workflows import InMemoryWorkflowStateStore


class _RunsOnly:
    """Forwards `WorkflowRunStoreProtocol`'s methods, and nothing else.

    The methods are set on the class (below), not found by ``__getattr__``: from Python
    3.12 on, an ``isinstance`` check against a runtime protocol looks members up
    statically and does not see what ``__getattr__`` would answer.
    """

    def __init__(self, inner: InMemoryWorkflowStateStore) -> None:
        self._inner = inner


def _forwarding(name: str) -> Any:
    def method(self: _RunsOnly, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


_RUN_METHODS = frozenset(
    name for name in dir(WorkflowRunStoreProtocol) if not name.startswith("_")
) - frozenset(name for name in dir(object))
for _name in _RUN_METHODS:
    setattr(_RunsOnly, _name, _forwarding(_name))


class _Backend:
    """A shared backend whose workflow store keeps runs only."""

    url_schemes = ()
    url_field = None

    def __init__(self, *, runs_only: bool) -> None:
        self.store = InMemoryWorkflowStateStore()
        self.runs_only = runs_only

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return MemoryTaskQueue(queue_name=spec.queue_name)

    def create_workflow_state_store(self, spec: TaskBackendSpec, /) -> object:
        return _RunsOnly(self.store) if self.runs_only else self.store


@pytest.fixture
def clean_cache() -> Iterator[None]:
    _backends.clear_backend_cache()
    yield
    _backends.clear_backend_cache()


def _dashboard(runs_only: bool) -> DashboardBackend:
    _backends._cache["wf"] = _Backend(runs_only=runs_only)  # as if installed
    return DashboardBackend(TaskBackendSpec(type="wf", queue_name="tasks"))


async def test_a_run_store_alone_lists_no_workflows(clean_cache: None) -> None:
    runs_only = _RunsOnly(InMemoryWorkflowStateStore())
    assert isinstance(runs_only, WorkflowRunStoreProtocol)
    assert not isinstance(runs_only, WorkflowStateStoreProtocol)
    dashboard = _dashboard(runs_only=True)
    try:
        assert await dashboard.workflows() is None
        assert await dashboard.workflow("no-such-run") is None  # runs open by id all the same
    finally:
        await dashboard.close()
    # A store that can list them still does.
    dashboard = _dashboard(runs_only=False)
    try:
        assert await dashboard.workflows() == []
    finally:
        await dashboard.close()


async def test_the_workflows_page_renders(clean_cache: None) -> None:
    app = Dashboard(_dashboard(runs_only=True))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
            page = await client.get("/workflows")
    finally:
        await app.close()
    assert page.status_code == 200, page.text
    assert '<p class="empty">' in page.text
    assert '<table class="workflows">' not in page.text
