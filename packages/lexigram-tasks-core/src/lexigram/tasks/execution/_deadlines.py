"""`DeadlineTimer`: the one event-loop timer behind the timeouts of a worker's jobs."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable


class DeadlineTimer:
    """A timer set at the earliest deadline of a worker's running jobs.

    `at` is that deadline in loop time (``time.monotonic()`` on asyncio's loops; inf:
    no timer). A new job's deadline is compared with `at` and the timer is moved only
    when it is earlier, so the timeout of a job that ends after another's costs one
    comparison on the path every job takes.

    Args:
        due: Called on the loop when the timer fires; it interrupts the jobs whose
            deadline has passed and arms the timer for the next one.
    """

    __slots__ = ("_due", "_handle", "at")

    def __init__(self, due: Callable[[], None]) -> None:
        self.at = math.inf
        self._handle: asyncio.TimerHandle | None = None
        self._due = due

    def arm(self, deadline: float) -> None:
        """Fire at `deadline` (loop time) instead of when it was set to fire, if at all."""
        if self._handle is not None:
            self._handle.cancel()
        self.at = deadline
        self._handle = asyncio.get_running_loop().call_at(deadline, self._fire)

    def cancel(self) -> None:
        """Do not fire (the worker stopped)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.at = math.inf

    def _fire(self) -> None:
        self._handle = None
        self.at = math.inf
        self._due()
