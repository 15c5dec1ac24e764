"""`ScheduledWorker`: a periodic background job with an error policy and graceful stop.

Subclass it and implement `run_cycle`. Sleeps between cycles wait on a stop event, so
`stop` takes effect at once instead of after the interval.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from typing import ClassVar

from lexigram.contracts.tasks import OnErrorPolicy
from lexigram.tasks.background_task_manager import BackgroundTaskManager

logger = logging.getLogger(__name__)

BACKOFF_CAP = 10.0
"""BACKOFF never waits longer than this many intervals."""


class ScheduledWorker(ABC):
    """Periodic worker base class.

    Subclass and implement `run_cycle`. The base class handles the scheduling loop,
    error policy, graceful shutdown, and task tracking via `BackgroundTaskManager`.

    When `run_cycle` raises, `on_error_policy` decides: LOG_AND_CONTINUE logs and keeps
    the interval; BACKOFF logs and doubles the wait after each consecutive failure
    (2x, 4x, 8x, then capped at 10x the interval; a success resets it); STOP logs and
    ends the worker. Each wait adds a random jitter of up to `max_jitter_seconds`.

    Class-level defaults (override per subclass or via the constructor):

        class MyWorker(ScheduledWorker):
            interval_seconds = 60.0
            initial_delay_seconds = 0.0
            max_jitter_seconds = 0.0
            on_error_policy = OnErrorPolicy.LOG_AND_CONTINUE

    Constructor injection is the preferred way to customise at runtime:

        worker = MyWorker(
            task_manager=task_manager,
            interval_seconds=30.0,
            on_error_policy=OnErrorPolicy.BACKOFF,
        )

    Args:
        task_manager: Shared `BackgroundTaskManager` that owns the task handle and
            participates in framework shutdown.
        interval_seconds: Override `interval_seconds`.
        initial_delay_seconds: Override `initial_delay_seconds`.
        max_jitter_seconds: Override `max_jitter_seconds`.
        on_error_policy: Override `on_error_policy`.

    Raises:
        ValueError: A non-positive interval, or a negative delay or jitter.
    """

    interval_seconds: ClassVar[float] = 60.0
    initial_delay_seconds: ClassVar[float] = 0.0
    max_jitter_seconds: ClassVar[float] = 0.0
    on_error_policy: ClassVar[OnErrorPolicy] = OnErrorPolicy.LOG_AND_CONTINUE

    def __init__(
        self,
        task_manager: BackgroundTaskManager,
        *,
        interval_seconds: float | None = None,
        initial_delay_seconds: float | None = None,
        max_jitter_seconds: float | None = None,
        on_error_policy: OnErrorPolicy | None = None,
    ) -> None:
        self._task_manager = task_manager
        self._interval = float(
            type(self).interval_seconds if interval_seconds is None else interval_seconds
        )
        self._initial_delay = float(
            type(self).initial_delay_seconds
            if initial_delay_seconds is None
            else initial_delay_seconds
        )
        self._jitter = float(
            type(self).max_jitter_seconds if max_jitter_seconds is None else max_jitter_seconds
        )
        self._policy = OnErrorPolicy(
            type(self).on_error_policy if on_error_policy is None else on_error_policy
        )
        name = type(self).__name__
        if not self._interval > 0:
            msg = f"{name} interval_seconds={self._interval!r} is not positive. Pass seconds > 0."
            raise ValueError(msg)
        if self._initial_delay < 0 or self._jitter < 0:
            msg = (
                f"{name} initial_delay_seconds={self._initial_delay!r} and "
                f"max_jitter_seconds={self._jitter!r} must not be negative."
            )
            raise ValueError(msg)
        self._stop_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._delay = self._interval
        self._cycles = 0
        self._failures = 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(interval={self._interval!r}, policy={self._policy.value}, "
            f"running={self.is_running})"
        )

    @property
    def is_running(self) -> bool:
        """True while the worker loop runs."""
        return self._task is not None and not self._task.done()

    @property
    def effective_interval(self) -> float:
        """The configured interval, in seconds."""
        return self._interval

    @property
    def effective_policy(self) -> OnErrorPolicy:
        """The configured error policy."""
        return self._policy

    @property
    def cycles_run(self) -> int:
        """Cycles finished so far (successful or not)."""
        return self._cycles

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last successful cycle."""
        return self._failures

    @property
    def next_delay(self) -> float:
        """Seconds the worker waits after the current cycle, before jitter."""
        return self._delay

    async def start(self) -> None:
        """Start the worker loop as a tracked background task.

        Safe to call only once; calling it while already running is a no-op (logs a
        warning).
        """
        if self.is_running:
            logger.warning("%s is already running; start() ignored.", type(self).__name__)
            return
        self._stop_event = asyncio.Event()
        self._delay = self._interval
        self._failures = 0
        self._task = self._task_manager.track_named(type(self).__name__, self._loop())

    async def stop(self, grace_seconds: float = 2.0) -> None:
        """Signal the worker to stop and wait for it to finish.

        Graceful: the stop event is set so the sleeping phase wakes up early, and the
        current cycle (if any) is allowed to finish. If the task has not completed
        within `grace_seconds`, it is forcibly cancelled.

        Args:
            grace_seconds: Seconds to wait for a clean stop before cancelling.
        """
        self._stop_event.set()
        task = self._task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=grace_seconds)
        if not done:
            logger.warning(
                "%s did not stop within %.1f s; cancelling its current cycle.",
                type(self).__name__,
                grace_seconds,
            )
            task.cancel()
            await asyncio.wait({task})

    @abstractmethod
    async def run_cycle(self) -> None:
        """Override to implement one unit of periodic work.

        Called once per interval. Must not swallow `asyncio.CancelledError`.
        """

    async def _loop(self) -> None:
        if self._initial_delay > 0 and await self._wait(self._initial_delay):
            return
        while not self._stop_event.is_set():
            try:
                await self.run_cycle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._cycles += 1
                if not self._on_error(exc):
                    return
            else:
                self._cycles += 1
                self._failures = 0
                self._delay = self._interval
            pause = self._delay
            if self._jitter > 0:
                pause += random.uniform(0.0, self._jitter)  # noqa: S311 - jitter, not security
            if await self._wait(pause):
                return

    def _on_error(self, exc: Exception) -> bool:
        """Apply the error policy to the failure being handled; False means stop."""
        name = type(self).__name__
        self._failures += 1
        if self._policy is OnErrorPolicy.STOP:
            logger.error("%s.run_cycle failed; stopping (policy STOP).", name, exc_info=exc)
            return False
        if self._policy is OnErrorPolicy.BACKOFF:
            self._delay = min(self._delay * 2, self._interval * BACKOFF_CAP)
            logger.error(
                "%s.run_cycle failed (%d in a row); next cycle in %.1f s (policy BACKOFF).",
                name,
                self._failures,
                self._delay,
                exc_info=exc,
            )
            return True
        self._delay = self._interval
        logger.error(
            "%s.run_cycle failed; continuing (policy LOG_AND_CONTINUE).", name, exc_info=exc
        )
        return True

    async def _wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on stop; True if stop was requested."""
        try:
            async with asyncio.timeout(seconds):
                await self._stop_event.wait()
        except TimeoutError:
            return False
        return True
