"""The protocols of the application side: executors, workers, managers, progress, hooks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol, runtime_checkable

from lexigram.contracts.tasks._models import (
    ProgressSnapshot,
)


@runtime_checkable
class TaskExecutorProtocol(Protocol):
    """Protocol for task executors: dispatch a job to the handler registered for its name."""

    async def execute(self, task: Any) -> Any:
        """Execute `task` with its registered handler and return the handler's result.

        Raises:
            TaskNotFoundError: No handler is registered for the task's name.
        """
        ...

    def register_handler(self, task_name: str, handler: Any) -> None:
        """Register `handler` for `task_name`."""
        ...

    def get_handler(self, task_name: str) -> Any | None:
        """Return the handler for `task_name`, or None."""
        ...


@runtime_checkable
class ProgressTrackerProtocol(Protocol):
    """Protocol for tracking and broadcasting task progress.

    Implementations must be safe for concurrent use. `subscribe` returns a live async
    iterator that yields a snapshot per change and ends on COMPLETE or FAILED; a
    subscriber that arrives after the end gets the terminal snapshot once.
    """

    async def update(self, task_id: str, current: int, total: int, message: str = "") -> None:
        """Record incremental progress for a task."""
        ...

    async def complete(self, task_id: str, result: str = "") -> None:
        """Mark a task as completed and close its subscriptions."""
        ...

    async def fail(self, task_id: str, error: str) -> None:
        """Mark a task as failed and close its subscriptions."""
        ...

    async def get(self, task_id: str) -> ProgressSnapshot | None:
        """Return the most recent snapshot, or None if the task is unknown."""
        ...

    def subscribe(self, task_id: str) -> AsyncIterator[ProgressSnapshot]:
        """Return an async iterator of snapshots for `task_id` (not a coroutine)."""
        ...


@runtime_checkable
class JobProtocol(Protocol):
    """Structural view of a job: what any job-like object exposes.

    `lexigram.tasks.JobProtocol` is the concrete `Job` dataclass, which satisfies this.
    """

    id: str
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    priority: int
    max_retries: int | None
    timeout: float | None
    correlation_id: str | None
    causation_id: str | None


@runtime_checkable
class JobTemplateProtocol(Protocol):
    """Structural view of a job template (what `JobTemplate` satisfies)."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    priority: int
    max_retries: int | None
    timeout: float | None
    depends_on: list[str]


@runtime_checkable
class TaskWorkerProtocol(Protocol):
    """A worker that consumes a queue until stopped."""

    async def start(self) -> None:
        """Start consuming."""
        ...

    async def stop(self) -> None:
        """Stop consuming."""
        ...


@runtime_checkable
class TaskManagerProtocol(Protocol):
    """Tracks background asyncio tasks and shuts them down together."""

    def track(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Schedule `coro` as a tracked task."""
        ...

    def track_named(self, name: str, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Schedule `coro` as a tracked task with a name for logs."""
        ...

    @property
    def pending_count(self) -> int:
        """Number of tracked tasks not yet done."""
        ...

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel pending tasks and wait up to `timeout` seconds."""
        ...


@runtime_checkable
class HookRegistryProtocol(Protocol):
    """Receives lifecycle actions ("task.queued", "task.started", ...) with their payloads."""

    async def emit(self, action: str, payload: Any) -> None:
        """Deliver `payload` to every observer of `action`; observers' errors are logged."""
        ...
