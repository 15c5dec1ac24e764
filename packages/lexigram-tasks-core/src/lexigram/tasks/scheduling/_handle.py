"""`ScheduleHandle`: the awaitable outcome of `schedule_job` and `unschedule_job`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ScheduleHandle(Generic[T]):
    """What `TaskScheduler.schedule_job` and `unschedule_job` return.

    The change is made when the method is called, so the published example
    ``scheduler.schedule_job(template, "0 0 * * *")`` works without ``await``. Awaiting
    the handle waits for the store write and returns the outcome; `value` holds the
    outcome too. A handle that is never awaited creates no coroutine (so no "never
    awaited" warning) and its store write still happens.

    Args:
        value: The outcome (a schedule id, or whether a schedule was removed).
        task: The store write already running on the loop, if one was started.
        write: Performs the store write when no task was started.
    """

    __slots__ = ("_task", "_write", "awaited", "value")

    def __init__(
        self,
        value: T,
        *,
        task: asyncio.Task[None] | None = None,
        write: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.value = value
        self.awaited = False
        self._task = task
        self._write = write

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait().__await__()

    async def _wait(self) -> T:
        self.awaited = True
        if self._task is not None:
            # Shielded: cancelling the awaiting caller must not cut a store write short.
            await asyncio.shield(self._task)
        elif self._write is not None:
            await self._write()
        return self.value

    def __repr__(self) -> str:
        return f"ScheduleHandle({self.value!r})"
