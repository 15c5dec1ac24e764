"""`TaskProvider` builds everything through its backend registry, and releases it.

A backend registered in code on ``provider.backend_registry`` serves the provider's
queue and stores (no entry point needed), backs the `LockManager` the container
provides, and is closed at shutdown as the command line closes the backends it used.
A backend that keeps nothing in this process and offers no workflow store is not told
it got an in-memory one.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import Job, TaskBackendSpec
from lexigram.tasks import TaskConfig, TaskProvider
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.concurrency import LockManager
from lexigram.tasks.results import InMemoryResultStore


class _Acme:
    """A backend registered in code: its own queue, result store and lock manager."""

    url_schemes: ClassVar[tuple[str, ...]] = ()
    url_field: ClassVar[str | None] = None
    url_required: ClassVar[bool] = False

    def __init__(self) -> None:
        self.closed = 0
        self.result_store = InMemoryResultStore()
        self.locks = LockManager()

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return MemoryTaskQueue(queue_name=spec.queue_name)

    def create_result_store(self, spec: TaskBackendSpec, /) -> InMemoryResultStore:
        return self.result_store

    def create_lock_manager(self, spec: TaskBackendSpec, /) -> LockManager:
        return self.locks

    async def close(self) -> None:
        self.closed += 1


async def test_a_backend_registered_in_code_serves_the_provider_and_is_closed_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    acme = _Acme()
    provider = TaskProvider(config=TaskConfig.from_dict({"backend": {"type": "acme"}}))
    provider.backend_registry.register("acme", acme)

    async def double(n: int) -> int:
        return 2 * n

    provider.register_handler("double", double)
    with caplog.at_level(logging.INFO, logger="lexigram.tasks"):
        async with Application.boot(providers=[provider]) as app:
            job_id = await provider.enqueue_job(Job(name="double", args=(21,)))
            result = await acme.result_store.wait(job_id, timeout=5)
            assert result is not None
            assert result.data == 42
            locks = await app.container.resolve(LockManager)
            assert locks.backend is acme.locks
            assert acme.closed == 0
    assert acme.closed == 1
    # A shared backend without a workflow store gets none, and the log says so.
    [line] = [
        r.getMessage() for r in caplog.records if "create_workflow_state_store" in r.getMessage()
    ]
    assert "in-memory" not in line
    assert "WorkflowRunStoreProtocol" in line


async def test_the_memory_backend_gives_in_process_locks_and_workflows() -> None:
    provider = TaskProvider(worker_count=0)
    async with Application.boot(providers=[provider]) as app:
        locks: Any = await app.container.resolve(LockManager)
        assert locks.backend is None
        assert provider.stacks[provider.config.name].workflow_store is not None
