"""`DeadlineTimer`: the one event-loop timer behind the timeouts of a worker's jobs."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from lexigram.tasks.execution._running import TIMEOUT, Running

# Timer slack: asyncio may fire a timer a hair early; treat deadlines this close as due.
_DEADLINE_SLACK = 1e-3


class DeadlineTimer:
    """A timer set at the earliest deadline of a worker's running jobs.

    `at` is that deadline in loop time (``time.monotonic()`` on asyncio's loops; inf:
    no timer). A new job's deadline is compared with `at` and the timer is moved only
    when it is earlier, so the timeout of a job that ends after another's costs one
    comparison on the path every job takes.

    Args:
        in_flight: The worker's table of leased jobs (job id -> `Running`).
        interrupt: Interrupts a job for a reason (`TaskWorker._interrupt`); called with
            `TIMEOUT` for each job whose deadline passed when the timer fires.
    """

    __slots__ = ("_handle", "_in_flight", "_interrupt", "at")

    def __init__(
        self, in_flight: dict[str, Running], interrupt: Callable[[Running, str], None]
    ) -> None:
        self.at = math.inf
        self._handle: asyncio.TimerHandle | None = None
        self._in_flight = in_flight
        self._interrupt = interrupt

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

    def move(self, entry: Running, seconds: float) -> None:
        """Start (or move) a job's timeout clock: `seconds` from when it really started."""
        moved = entry.deadline != math.inf
        deadline = asyncio.get_running_loop().time() + seconds
        if moved and entry.started_at:
            deadline -= max(0.0, time.time() - entry.started_at)
        entry.deadline = deadline
        if deadline < self.at:
            self.arm(deadline)

    def _fire(self) -> None:
        self._handle = None
        self.at = math.inf
        due = asyncio.get_running_loop().time() + _DEADLINE_SLACK
        earliest = math.inf
        for entry in list(self._in_flight.values()):
            if entry.settling or entry.reason is not None:
                continue
            if entry.deadline <= due:
                self._interrupt(entry, TIMEOUT)
            elif entry.deadline < earliest:
                earliest = entry.deadline
        if earliest != math.inf:
            self.arm(earliest)
