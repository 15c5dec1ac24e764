"""`LoopLagMonitor`: notices when a task blocks the worker's event loop, and names it.

An ``async def`` task that calls blocking code (``time.sleep``, a blocking HTTP client, a
CPU-heavy loop) stops every other job of the process while it runs. The monitor sleeps
a short tick and measures how late it wakes; a wake later than the threshold means the
loop was blocked that long, and the warning names the tasks that were running then.
Its ticks also tell the worker's lease keeper (another thread) that the loop is alive;
the keeper names the job whose task blocks the loop while the block lasts, and this
monitor's warning after the block names that job too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

DEFAULT_LOOP_LAG_THRESHOLD = 0.5
"""Seconds of blocking after which the worker warns (`TaskWorker(loop_lag_threshold=...)`)."""


class LoopLagMonitor:
    """Measures the event loop's lag every `tick` seconds and warns past `threshold`.

    Args:
        threshold: Seconds the loop may be blocked before a warning.
        running: Returns the names of the tasks that ran during the last `lag` seconds
            (called with the lag, only to warn).
        logger: Where to warn.
        worker_id: The worker, named in the warning.
        tick: Seconds between measurements (default: a fifth of the threshold, at most
            0.1 s).
        blocker: Returns ``(job id, task name)`` of the job seen blocking the loop, if
            one was (the lease keeper's observation), or None.

    Attributes:
        max_lag: The longest lag measured so far, in seconds.
        last_lag: The lag of the last measurement.
        warnings: How many warnings were logged.
        last_tick: `time.monotonic()` of the last measurement (read by another thread).
    """

    def __init__(
        self,
        threshold: float,
        running: Callable[[float], Iterable[str]],
        logger: logging.Logger | logging.LoggerAdapter[Any],
        worker_id: str,
        tick: float | None = None,
        *,
        blocker: Callable[[], tuple[str, str] | None] | None = None,
    ) -> None:
        if not threshold > 0:
            msg = f"loop_lag_threshold={threshold!r}: use a positive number of seconds, or None."
            raise ValueError(msg)
        self.threshold = threshold
        self.tick = tick if tick is not None else min(0.1, threshold / 5)
        self.max_lag = 0.0
        self.last_lag = 0.0
        self.warnings = 0
        self.last_tick = time.monotonic()
        self._blocker = blocker
        self._running = running
        self._logger = logger
        self._worker_id = worker_id

    async def run(self) -> None:
        """Measure until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            self.last_tick = time.monotonic()
            await asyncio.sleep(self.tick)
            self.last_tick = time.monotonic()
            self.record(loop.time() - before - self.tick)

    def record(self, lag: float) -> None:
        """Take one measurement; warn when `lag` is past the threshold."""
        self.last_lag = lag = max(0.0, lag)
        self.max_lag = max(self.max_lag, lag)
        if lag < self.threshold:
            return
        self.warnings += 1
        counts = Counter(self._running(lag))
        names = ", ".join(
            f"{name!r}" if count == 1 else f"{name!r} (x{count})"
            for name, count in sorted(counts.items())
        )
        blocker = self._blocker() if self._blocker is not None else None
        culprit = "" if blocker is None else f" by job {blocker[0]} (task {blocker[1]!r})"
        self._logger.warning(
            "The event loop of worker %s was blocked for %.2f s%s (threshold %.2f s) while "
            "these tasks were running: %s. Every job of this process waited meanwhile. An "
            "async task must not call blocking code (time.sleep, a blocking client, heavy "
            "CPU work): declare the task with a plain `def` (it then runs in a thread) or "
            "wrap the blocking call in `await asyncio.to_thread(...)`.",
            self._worker_id,
            lag,
            culprit,
            self.threshold,
            names or "(none; the block came from outside the tasks)",
        )
