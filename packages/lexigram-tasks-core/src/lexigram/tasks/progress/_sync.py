"""`SyncProgressTracker`: a job's `ProgressTracker` for code that runs in a thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from lexigram.contracts.tasks import ProgressInfo
from lexigram.tasks.progress._tracker import ProgressTracker

logger = logging.getLogger(__name__)

# How often a thread waiting for its call checks that the loop still runs: a loop that
# stopped or closed after taking the call never runs it, and the thread would wait forever
# (holding up the interpreter's exit, which joins the thread pool's threads).
_LOOP_CHECK_SECONDS = 1.0

_Start = Callable[[], Coroutine[Any, Any, None]]


class SyncProgressTracker:
    """A job's `ProgressTracker` with blocking methods, for a `def` handler.

    A `def` handler runs in the worker's thread pool, where the coroutines of
    `ProgressTracker` would never be awaited. This tracker's `update`, `complete` and
    `fail` take the same arguments, run the job's `ProgressTracker` method on the
    worker's event loop and return once it is done, so the same `ProgressInfo` is saved
    (and broadcast) as from an `async def` handler, and its errors are raised in the
    calling thread.

    A `def` handler gets one when it declares a parameter annotated `SyncProgressTracker`
    or `ProgressTracker` (the worker picks the form that fits the handler; annotate
    `SyncProgressTracker` so that type checkers see methods that need no ``await``). An
    `async def` handler that declares `SyncProgressTracker` gets one too, for blocking
    code it runs in a thread (``await asyncio.to_thread(work, progress)``); calling it
    on the event loop's thread raises `RuntimeError`, as waiting there for the loop
    would never end.

    A call made once the job's attempt is over does nothing: a timed-out `def`
    handler's thread runs on to its end, and its late reports must not overwrite the
    job's final progress, nor that of its next attempt. So does a call made after the
    worker's event loop stopped.

    Args:
        tracker: The job's `ProgressTracker`, which does the saving.
        loop: The event loop that `tracker`'s store and live tracker belong to.
        ended: Returns True once the job's attempt is over (None: never).

    Example:
        @task
        def export(rows: int, progress: SyncProgressTracker = INJECTED) -> int:
            for row in range(1, rows + 1):
                write(row)
                progress.update(row, rows, f"row {row}")
            return rows
    """

    __slots__ = ("_ended", "_loop", "_pending", "_tracker")

    def __init__(
        self,
        tracker: ProgressTracker,
        loop: asyncio.AbstractEventLoop,
        *,
        ended: Callable[[], bool] | None = None,
    ) -> None:
        self._tracker = tracker
        self._loop = loop
        self._ended = ended
        self._pending: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        percentage = self._tracker.info.percentage
        return f"SyncProgressTracker(job_id={self.job_id!r}, percentage={percentage:.1f})"

    @property
    def job_id(self) -> str:
        """The job whose progress this is."""
        return self._tracker.job_id

    @property
    def info(self) -> ProgressInfo:
        """Return the current `ProgressInfo` snapshot (as of the last call that returned)."""
        return self._tracker.info

    @property
    def finished(self) -> bool:
        """True once `complete` or `fail` has been called."""
        return self._tracker.finished

    def update(self, current: int, total: int, message: str = "", **metadata: Any) -> None:
        """Update progress; computes the percentage and the estimated time remaining.

        Args:
            current: Current progress count.
            total: Total items to process (0 = unknown).
            message: Human-readable status message.
            **metadata: Additional metadata merged into `info.metadata`.

        Raises:
            RuntimeError: Called on the event loop's thread.
        """
        tracker = self._tracker
        self._call("update", functools.partial(tracker.update, current, total, message, **metadata))

    def complete(self, message: str = "Complete") -> None:
        """Mark progress as complete: current = total, 100%, no time remaining.

        Raises:
            RuntimeError: Called on the event loop's thread.
        """
        self._call("complete", functools.partial(self._tracker.complete, message))

    def fail(self, message: str) -> None:
        """Mark progress as failed with `message`.

        Raises:
            RuntimeError: Called on the event loop's thread.
        """
        self._call("fail", functools.partial(self._tracker.fail, message))

    def _call(self, method: str, start: _Start) -> None:
        """Run ``start()`` on the loop and wait for it; see the class docstring."""
        loop = self._loop
        if _running_loop() is loop:
            msg = (
                f"SyncProgressTracker.{method}() was called on the thread of the event loop "
                "it runs its calls on: it would wait for that loop, which cannot run the call "
                "while it waits (a deadlock). An async def handler takes a ProgressTracker "
                f"and awaits progress.{method}(...); a SyncProgressTracker is for a def "
                "handler, or for code that an async def handler runs in a thread "
                "(asyncio.to_thread)."
            )
            raise RuntimeError(msg)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            loop.call_soon_threadsafe(self._begin, method, start, done)
        except RuntimeError:  # the loop is closed
            self._dropped(method, "the worker's event loop is closed")
            return
        while True:
            try:
                done.result(timeout=_LOOP_CHECK_SECONDS)
            except concurrent.futures.CancelledError:
                self._dropped(method, "the worker's event loop cancelled it")
                return
            except TimeoutError:
                if done.done():  # the tracker's own TimeoutError (its store's)
                    raise
                if loop.is_closed() or not loop.is_running():
                    done.cancel()  # so that it never begins, if it has not yet
                    self._dropped(method, "the worker's event loop stopped")
                    return
            else:
                return

    def _begin(self, method: str, start: _Start, done: concurrent.futures.Future[None]) -> None:
        """On the loop: start the tracker's call, unless the caller gave up or it is late."""
        if not done.set_running_or_notify_cancel():
            return
        # Checked on the loop, where the worker settles the job: no call that runs after
        # the attempt ended can write over its final progress.
        if self._ended is not None and self._ended():
            self._dropped(method, "the job's attempt is over")
            done.set_result(None)
            return
        # The coroutine is created here, on the loop, so a call that never begins leaves
        # no coroutine behind that was never awaited.
        try:
            task = self._loop.create_task(start())
        except Exception as exc:  # raised in the calling thread, as an await would raise it
            done.set_exception(exc)
            return
        self._pending.add(task)  # the loop keeps only a weak reference to its tasks
        task.add_done_callback(functools.partial(self._settle, done))

    def _settle(self, done: concurrent.futures.Future[None], task: asyncio.Task[None]) -> None:
        """On the loop: hand the outcome of the tracker's call to the waiting thread."""
        self._pending.discard(task)
        if task.cancelled():  # the loop is shutting down; `done` is running: cannot cancel
            done.set_exception(concurrent.futures.CancelledError())
        elif (error := task.exception()) is not None:
            done.set_exception(error)
        else:
            done.set_result(None)

    def _dropped(self, method: str, why: str) -> None:
        logger.debug("Progress %s of job %s dropped: %s.", method, self.job_id, why)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
