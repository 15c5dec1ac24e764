"""`BackgroundTaskManager`: tracks fire-and-forget asyncio tasks and stops them together.

An untracked ``asyncio.create_task(...)`` can be garbage-collected mid-flight, its
exception is reported only as "never retrieved", and nothing cancels it at shutdown.
The manager keeps a strong reference until the task ends, logs a task's exception by
name when it ends, and `shutdown` cancels whatever is left and says which tasks did
not stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar, cast

logger = logging.getLogger(__name__)

T = TypeVar("T")


class BackgroundTaskManager:
    """Tracks and shuts down background asyncio tasks (implements `TaskManagerProtocol`).

    Inject as a singleton from any DI provider. Call `shutdown()` during application
    stop to cancel all in-flight tasks.

    Example:
        manager = BackgroundTaskManager()
        task = manager.track(some_coroutine())
        # … later …
        await manager.shutdown(timeout=30.0)
    """

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Future[Any], str] = {}

    def __repr__(self) -> str:
        return f"BackgroundTaskManager(pending={self.pending_count})"

    def track(self, coro: Awaitable[T]) -> asyncio.Task[T]:
        """Schedule `coro` as an asyncio task and track the handle.

        The task is removed from the tracked set automatically via a done callback, so
        completed tasks don't accumulate. An exception it ends with is logged.

        Args:
            coro: Any awaitable to wrap in a task.

        Returns:
            The created `asyncio.Task`.
        """
        return self._track(None, coro)

    def track_named(self, name: str, coro: Awaitable[T]) -> asyncio.Task[T]:
        """Like `track`, but attach a human-readable name for logs.

        Named tasks appear in `shutdown()` timeout warnings so operators can identify
        which work is still running at stop time.

        Args:
            name: Label surfaced in observability/log output.
            coro: Any awaitable to wrap in a task.

        Returns:
            The created `asyncio.Task`.
        """
        return self._track(name, coro)

    def _track(self, name: str | None, coro: Awaitable[T]) -> asyncio.Task[T]:
        task = _as_task(coro, name)
        if task.done():  # an already finished task handed in: nothing to track
            self._report(task, name or task.get_name())
            return task
        self._tasks[task] = name or task.get_name()
        task.add_done_callback(self._on_done)
        return task

    @property
    def pending_count(self) -> int:
        """Number of tasks that have not yet completed."""
        return sum(1 for task in self._tasks if not task.done())

    def pending_names(self) -> list[str]:
        """Names of the tasks that have not yet completed (unnamed ones by task name)."""
        return [name for task, name in self._tasks.items() if not task.done()]

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel all pending tracked tasks and await them.

        After cancellation the tasks are given up to `timeout` seconds collectively to
        finish (honour `CancelledError` and run their ``finally`` blocks). Tasks that
        do not stop within the timeout are logged by name; no exception is raised.

        Args:
            timeout: Seconds to wait for all tasks to finish after cancellation.
        """
        pending = {task: name for task, name in self._tasks.items() if not task.done()}
        if not pending:
            return
        current = asyncio.current_task()
        if current is not None:  # a task shutting the manager down does not cancel itself
            pending.pop(current, None)
        for task in pending:
            task.cancel()
        if not pending:
            return
        _, still_running = await asyncio.wait(pending, timeout=timeout)
        if still_running:
            names = sorted(pending[task] for task in still_running)
            logger.warning(
                "%d background task(s) did not stop within %.1f s of being cancelled: %s. "
                "They keep running; make them honour cancellation (no bare except, "
                "no blocking calls).",
                len(names),
                timeout,
                ", ".join(names),
            )

    def _on_done(self, task: asyncio.Future[Any]) -> None:
        name = self._tasks.pop(task, None) or repr(task)
        self._report(task, name)

    @staticmethod
    def _report(task: asyncio.Future[Any], name: str) -> None:
        if task.cancelled():
            return
        exc = task.exception()  # retrieving it also silences "never retrieved"
        if exc is not None:
            logger.error("Background task %s failed.", name, exc_info=exc)


def _as_task(awaitable: Awaitable[T], name: str | None) -> asyncio.Task[T]:
    if isinstance(awaitable, asyncio.Task):
        if name is not None:
            awaitable.set_name(name)
        return awaitable

    async def _await() -> T:
        return await awaitable

    coro = awaitable if asyncio.iscoroutine(awaitable) else _await()
    return cast("asyncio.Task[T]", asyncio.get_running_loop().create_task(coro, name=name))
