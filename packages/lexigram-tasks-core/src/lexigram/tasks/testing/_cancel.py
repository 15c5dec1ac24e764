"""Conformance of the optional cancellation capability (`CancellableQueueProtocol`).

`QueueCancellationConformance` checks what `JobHandle.cancel` relies on: a waiting or
delayed job is removed and never delivered; an in-flight one is removed, its holder's
heartbeat (`extend_lease`) fails, and its id reaches every open `cancellations`
iterator, on any queue handle; through a real `TaskWorker`, a running handler stops within
`cancel_margin` seconds, is neither retried nor dead-lettered, and the result store
says CANCELLED. A backend without the capability leaves this class out.
"""

# ruff: noqa: S101 - the kit is pytest tests: assert is how they check

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    CancellableQueueProtocol,
    CancelOutcome,
    JobStatus,
    ResultStoreProtocol,
    TaskCancelledError,
    TaskQueueProtocol,
)
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.events import CANCELLED, JobEvent
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.handles import JobHandle
from lexigram.tasks.results import InMemoryResultStore
from lexigram.tasks.testing._base import (
    CLOCK_TOLERANCE,
    QueueConformanceBase,
    QueueFactory,
    enqueue_ok,
    lease_one,
    make_job,
    next_job,
    token_of,
)

_SLOW_TASK = "conformance.cancel.slow"
_QUICK_TASK = "conformance.cancel.quick"
_ANSWER = 7
# A subscription has no "ready" signal; give a new one this long to be established
# (a Redis Cluster client, for one, discovers the nodes first).
_SUBSCRIBE_SECONDS = 0.5


def _cancellable(queue: TaskQueueProtocol) -> CancellableQueueProtocol:
    assert isinstance(queue, CancellableQueueProtocol), (
        f"{type(queue).__name__} does not implement CancellableQueueProtocol (cancel and "
        "cancellations); leave QueueCancellationConformance out of its test class"
    )
    return queue


async def _announced(iterator: AsyncIterator[str], job_id: str) -> None:
    """Return once `iterator` yields `job_id`; close the iterator either way."""
    try:
        async for got in iterator:
            assert isinstance(got, str), f"cancellations() yielded {got!r}, not a job id"
            if got == job_id:
                return
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


class _Probe:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.calls = 0
        self.events: list[str] = []

    def observe(self, event: JobEvent) -> None:
        self.events.append(event.kind)


class QueueCancellationConformance(QueueConformanceBase):
    """Cancelling waiting, delayed, in-flight and finished jobs (optional capability).

    Fixtures:
        result_store: The result store the kit's worker and handles use (default: an
            in-memory one); a backend with its own store overrides it to check that
            CANCELLED is recorded there.

    Attributes:
        cancel_margin: Seconds within which a running handler is cancelled after
            `cancel` returned (default 2.0).
    """

    cancel_margin: float = 2.0

    @pytest.fixture
    def result_store(self) -> ResultStoreProtocol:
        """Where the kit's worker stores results and its handles read them."""
        return InMemoryResultStore()

    async def test_cancel_removes_a_waiting_job(
        self, make_queue: QueueFactory, result_store: ResultStoreProtocol
    ) -> None:
        queue = await make_queue()
        other = _cancellable(await make_queue())
        job_id = await enqueue_ok(queue, make_job())
        handle: JobHandle[Any] = JobHandle(other, job_id, result_store=result_store)
        assert await handle.cancel() is CancelOutcome.REMOVED
        assert await handle.status() is JobStatus.CANCELLED
        with pytest.raises(TaskCancelledError):
            await handle.result(timeout=1)
        assert await queue.get_job(job_id) is None
        assert await queue.count(queue.queue_name) == 0
        assert await next_job(queue, 0.2) is None, "a cancelled waiting job was delivered"
        assert await other.cancel(job_id) is CancelOutcome.NOT_FOUND

    async def test_cancel_removes_a_delayed_job(
        self, make_queue: QueueFactory, result_store: ResultStoreProtocol
    ) -> None:
        queue = await make_queue()
        other = await make_queue()
        job_id = await enqueue_ok(queue, make_job(scheduled_at=time.time() + 0.3))
        handle: JobHandle[Any] = JobHandle(other, job_id, result_store=result_store)
        assert await handle.cancel() is CancelOutcome.REMOVED
        assert await handle.status() is JobStatus.CANCELLED
        got = await next_job(queue, 0.3 + self.due_margin)
        assert got is None, "a cancelled delayed job was delivered when it fell due"
        assert await queue.count(queue.queue_name) == 0

    async def test_cancel_of_an_unknown_job_is_not_found(self, make_queue: QueueFactory) -> None:
        queue = _cancellable(await make_queue())
        assert await queue.cancel("conformance-no-such-job") is CancelOutcome.NOT_FOUND

    async def test_cancel_of_an_in_flight_job_is_announced_to_every_subscriber(
        self, make_queue: QueueFactory
    ) -> None:
        queue = _cancellable(await make_queue())
        other = _cancellable(await make_queue())
        job = make_job()
        job_id = job.id
        listeners = [
            asyncio.create_task(_announced(q.cancellations(), job_id)) for q in (queue, other)
        ]
        try:
            await asyncio.sleep(_SUBSCRIBE_SECONDS)
            # Leased only now, so the lease is still live when it is cancelled.
            await enqueue_ok(queue, job)
            job = await lease_one(queue)
            assert await other.cancel(job_id) is CancelOutcome.STOPPING
            done, _ = await asyncio.wait(listeners, timeout=1.0 + CLOCK_TOLERANCE)
            assert len(done) == len(listeners), (
                "the cancellation of an in-flight job did not reach every open "
                "cancellations() iterator within 1 s"
            )
            for listener in done:
                listener.result()
        finally:
            for listener in listeners:
                listener.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
        token = token_of(job)
        # The holder's heartbeat fails: how a worker that missed the notice stops too.
        assert not await queue.extend_lease(job_id, lease_token=token), (
            "the lease of a cancelled job was extended"
        )
        assert await queue.get_job(job_id) is None

    async def test_worker_stops_a_cancelled_running_job_and_records_it(
        self, make_queue: QueueFactory, result_store: ResultStoreProtocol, lease_seconds: float
    ) -> None:
        queue = await make_queue()
        other = await make_queue()
        probe = _Probe()
        dlq = DeadLetterQueue()

        async def slow() -> None:
            probe.calls += 1
            probe.started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                probe.stopped.set()
                raise

        worker = _worker(queue, {_SLOW_TASK: slow}, result_store, dlq, probe)
        await worker.start()
        try:
            job_id = await enqueue_ok(other, make_job(_SLOW_TASK))
            await asyncio.wait_for(probe.started.wait(), self.prompt_seconds)
            # The worker subscribed when it started, concurrently with taking the job.
            await asyncio.sleep(_SUBSCRIBE_SECONDS)
            handle: JobHandle[Any] = JobHandle(other, job_id, result_store=result_store)
            assert await handle.cancel() is CancelOutcome.STOPPING
            try:
                await asyncio.wait_for(probe.stopped.wait(), self.cancel_margin)
            except TimeoutError:
                pytest.fail(f"the running handler was not cancelled within {self.cancel_margin} s")
            with pytest.raises(TaskCancelledError):
                await handle.result(timeout=self.prompt_seconds)
            assert await handle.status() is JobStatus.CANCELLED
            # Past the lease: a job the backend still held would be delivered again now.
            await asyncio.sleep(lease_seconds + CLOCK_TOLERANCE)
            assert probe.calls == 1, "a cancelled job ran again"
            assert worker.stats.jobs_retried == 0
            assert worker.stats.jobs_cancelled == 1
            assert dlq.size == 0, "a cancelled job was dead-lettered"
            # "cancelled", not "lost": the announcement stopped it, not a lost lease.
            assert probe.events[-1] == CANCELLED, f"the job's events were {probe.events}"
            assert await queue.count(queue.queue_name) == 0
        finally:
            await worker.stop()
        stored = await result_store.get(job_id)
        assert stored is not None
        assert stored.status is JobStatus.CANCELLED

    async def test_cancel_of_a_finished_job_says_so(
        self, make_queue: QueueFactory, result_store: ResultStoreProtocol
    ) -> None:
        queue = await make_queue()
        other = await make_queue()

        async def quick(value: int) -> int:
            return value

        worker = _worker(queue, {_QUICK_TASK: quick}, result_store, DeadLetterQueue(), _Probe())
        await worker.start()
        try:
            job_id = await enqueue_ok(other, make_job(_QUICK_TASK, args=(_ANSWER,)))
            handle: JobHandle[Any] = JobHandle(other, job_id, result_store=result_store)
            assert await handle.result(timeout=self.prompt_seconds) == _ANSWER
            assert await handle.cancel() is CancelOutcome.FINISHED
            assert await handle.result(timeout=1) == _ANSWER
            assert await handle.status() is JobStatus.COMPLETED
        finally:
            await worker.stop()


def _worker(
    queue: TaskQueueProtocol,
    handlers: dict[str, Any],
    result_store: ResultStoreProtocol,
    dlq: DeadLetterQueue,
    probe: _Probe,
) -> TaskWorker:
    return TaskWorker(
        "conformance-cancel",
        queue,
        handlers,
        TaskWorkerConfig(poll_interval=0.1),
        TaskWorkerServices(result_store=result_store, dead_letter_queue=dlq, observers=[probe]),
    )
