"""A hook registry for tests: records every lifecycle action and lets a test wait on them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class HookRecorder:
    """A `HookRegistryProtocol` that records each action and wakes waiters on every one.

    Pass it as a worker's hooks (`TaskWorkerServices(hooks=...)`), then wait for what
    the test expects instead of sleeping::

        hooks = HookRecorder()
        await hooks.wait_until(lambda: len(hooks.ids("task.completed")) == 3)

    Attributes:
        events: Every `(action, payload)` received, in order.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()

    async def emit(self, action: str, payload: Any) -> None:
        """Record `payload` under `action` and wake any `wait_until`."""
        self.events.append((action, payload))
        self._changed.set()

    def ids(self, action: str) -> list[str]:
        """Return the `task_id` of every payload recorded under `action`, in order."""
        return [payload.task_id for name, payload in self.events if name == action]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds, re-checking after each recorded action.

        Raises:
            TimeoutError: It did not hold within `timeout` seconds.
        """
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()
