"""Cancelling running jobs: the worker's listener, and the handler's shield.

`CancelWatch` listens to a `CancellableQueueProtocol` queue's announcements and
interrupts the job of this worker that was cancelled. An announcement can overtake the
lease it concerns (the job was leased, then cancelled, before the worker started it),
so ids of jobs not running here are remembered for a minute and checked when a job
starts.

`shield_cancellation` marks a block of a handler that the worker does not interrupt.
The runner records the job it runs in a context variable (each job runs in its own
asyncio task, and a sync handler's thread runs in a copy of that context), so the
block finds its job without the handler passing anything. While a job is inside a
shield, the worker marks it instead of cancelling its task (`TaskWorker._interrupt`);
the block's end then delivers the cancellation the worker held back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks import CancellableQueueProtocol, JobResult
from lexigram.tasks._outage import OutageLog

if TYPE_CHECKING:
    from lexigram.tasks.execution._running import Running

# Seconds a cancellation of a job this worker does not run is remembered: it may be
# one the worker leased but has not started yet (the announcement overtook dequeue).
CANCEL_MEMORY = 60.0
# Longest pause before subscribing again after the subscription failed.
_MAX_BACKOFF = 5.0

current_entry: ContextVar[Running | None] = ContextVar("lexigram_tasks_job", default=None)
"""The in-flight job whose handler runs in this context (None outside a worker's job)."""


@contextmanager
def shield_cancellation() -> Iterator[None]:
    """Keep the worker from interrupting the enclosed block of a running handler.

    A cancellation the worker makes while the block runs (the job was cancelled, it
    timed out, its lease was lost or the worker is stopping) is held back and
    delivered when the outermost shield ends: ``asyncio.CancelledError`` is raised
    there, in async and sync (``def``) handlers alike, and the job ends as it would
    have (cancelled, retried after a timeout, or released). Use it around a few
    statements that must not stop half-way, such as a payment call and the write that
    records it. Keep the block short: a worker that is stopping waits at most 5 s for
    a handler before it gives up on it. Outside a worker's job it does nothing.

    Example:
        @task()
        async def charge(order_id: str) -> None:
            with shield_cancellation():
                receipt = await payments.charge(order_id)
                await orders.mark_paid(order_id, receipt)
            await notify(order_id)  # a cancellation held back above lands here
    """
    entry = current_entry.get()
    if entry is None:
        yield
        return
    entry.shield += 1
    try:
        yield
    finally:
        entry.shield -= 1
    # Reached only when the block did not raise: an exception already ends the job.
    if entry.shield == 0 and entry.deferred:
        entry.deferred = False
        raise asyncio.CancelledError


def cancelled_result(
    job_id: str, name: str | None, *, duration: float = 0.0, retry_count: int = 0
) -> JobResult:
    """The `JobResult` a cancelled job leaves in the result store."""
    label = f"Job {job_id} ({name!r})" if name else f"Job {job_id}"
    return JobResult(
        success=False,
        error=f"{label} was cancelled.",
        duration=duration,
        retry_count=retry_count,
        id=job_id,
        name=name or None,
        failed_at=time.time(),
        cancelled=True,
    )


class CancelWatch:
    """One worker's subscription to its queue's cancellations.

    Args:
        queue: The queue whose announcements are followed.
        interrupt: Interrupts the job with that id if this worker runs it; returns
            False when it does not.
        logger: Where a lost subscription is logged.
        worker_id: Named in the log.
    """

    __slots__ = ("_interrupt", "ids", "logger", "queue", "worker_id")

    def __init__(
        self,
        queue: CancellableQueueProtocol,
        interrupt: Callable[[str], bool],
        logger: logging.Logger | logging.LoggerAdapter[Any],
        worker_id: str,
    ) -> None:
        self.queue = queue
        self._interrupt = interrupt
        self.logger = logger
        self.worker_id = worker_id
        # Job id -> monotonic time of its announcement, for jobs not running here.
        self.ids: dict[str, float] = {}

    async def run(self, running: Callable[[], bool]) -> None:
        """Follow the announcements while `running()`; subscribe again after a failure.

        A lost subscription is logged once. A subscription made again cannot tell
        whether the backend is back (RabbitMQ's waits for the reconnect), so the outage
        counts as over at the next announcement, or after a quiet minute.
        """
        backoff = 0.1
        outage = OutageLog(self.logger, f"Worker {self.worker_id}", "follow job cancellations")
        while True:
            try:
                async for job_id in self.queue.cancellations():
                    backoff = 0.1
                    if outage.in_outage:
                        outage.succeeded()
                    self.announced(job_id)
            except Exception as exc:
                outage.failed(exc, backoff)
            if not running():
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def announced(self, job_id: str) -> None:
        """Interrupt the job if it runs here, else remember its id for a while."""
        if self._interrupt(job_id):
            return
        now = time.monotonic()
        ids = self.ids
        ids[job_id] = now
        for old, at in list(ids.items()):  # oldest first: insertion order
            if now - at < CANCEL_MEMORY:
                break
            del ids[old]
