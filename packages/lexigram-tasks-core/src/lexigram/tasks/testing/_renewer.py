"""Conformance of the optional lease renewer (`LeaseRenewingQueueProtocol`).

`QueueLeaseRenewerConformance` checks what a worker's lease keeper relies on: a renewer
opened by the queue works from another thread's event loop (its own connection) and
keeps a batch of leases past their length; a token that no longer holds its lease
(acked, deleted, expired and delivered again) is reported back and not revived, while
the new holder's lease is untouched; and through a real `TaskWorker`, an ``async``
handler that blocks the event loop past the lease runs once, on one worker, while
another worker waits for the job. A backend without the capability leaves it out.
"""

# ruff: noqa: S101 - the kit is pytest tests: assert is how they check

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import (
    LeaseRenewerProtocol,
    LeaseRenewingQueueProtocol,
    TaskQueueProtocol,
)
from lexigram.tasks.events import COMPLETED, STARTED, JobEvent
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.testing._base import (
    CLOCK_TOLERANCE,
    QueueConformanceBase,
    QueueFactory,
    enqueue_ok,
    lease_one,
    make_job,
    next_job,
    outlive_lease,
    token_of,
)

T = TypeVar("T")

_BLOCKING_TASK = "conformance.renewer.blocks_the_loop"


class _OtherLoop:
    """An event loop on a thread of its own, as the worker's lease keeper has."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    async def run(self, make: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(call(), self.loop)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        self.loop.close()


def _renewing(queue: TaskQueueProtocol) -> LeaseRenewingQueueProtocol:
    assert isinstance(queue, LeaseRenewingQueueProtocol), (
        f"{type(queue).__name__} does not implement LeaseRenewingQueueProtocol "
        "(open_lease_renewer); leave QueueLeaseRenewerConformance out of its test class"
    )
    return queue


class QueueLeaseRenewerConformance(QueueConformanceBase):
    """Leases renewed from another thread: kept, fenced, and kept through a blocked loop.

    Fixtures:
        other_loop: An event loop on a thread of its own (the keeper's stand-in).
        renewer: A renewer opened by the test's queue, closed on that loop afterwards.
    """

    @pytest.fixture
    def other_loop(self) -> Iterator[_OtherLoop]:
        """An event loop on another thread; closed after the test."""
        other = _OtherLoop()
        yield other
        other.close()

    @pytest_asyncio.fixture
    async def renewer(
        self, queue: TaskQueueProtocol, other_loop: _OtherLoop
    ) -> AsyncIterator[LeaseRenewerProtocol]:
        """A renewer of the test's queue; closed on `other_loop` afterwards."""
        opened = _renewing(queue).open_lease_renewer()
        assert opened is not None, (
            "open_lease_renewer() returned None for a queue built by make_queue; give the "
            "kit a queue that can open a connection of its own"
        )
        assert isinstance(opened, LeaseRenewerProtocol)
        yield opened
        await other_loop.run(opened.close)

    async def test_renewals_from_another_loop_keep_leases_past_their_length(
        self,
        queue: TaskQueueProtocol,
        renewer: LeaseRenewerProtocol,
        other_loop: _OtherLoop,
        lease_seconds: float,
    ) -> None:
        for _ in range(2):
            await enqueue_ok(queue, make_job())
        jobs = [await lease_one(queue), await lease_one(queue)]
        leases = [(job.id, token_of(job)) for job in jobs]
        end = time.monotonic() + lease_seconds * 2 + CLOCK_TOLERANCE
        while True:
            lost = await other_loop.run(lambda: renewer.renew(leases, lease_seconds))
            assert list(lost) == [], f"renew() reported held leases as lost: {lost!r}"
            if time.monotonic() >= end:
                break
            await asyncio.sleep(lease_seconds / 3)
        # Checked right after a renewal, so a loaded machine that stalls the test between
        # two ticks cannot let a lease lapse that a worker's keeper would have renewed.
        assert await next_job(queue, 0.05) is None, (
            "a lease renewed through the renewer was delivered again"
        )
        for job in jobs:
            assert await queue.ack(job.id, lease_token=job.lease_token), (
                "ack with the token of a lease kept by the renewer was refused"
            )

    async def test_a_token_that_lost_its_lease_is_reported_and_not_revived(
        self,
        queue: TaskQueueProtocol,
        renewer: LeaseRenewerProtocol,
        other_loop: _OtherLoop,
        lease_seconds: float,
    ) -> None:
        acked_id = await enqueue_ok(queue, make_job())
        acked = await lease_one(queue)
        assert acked.id == acked_id
        assert await queue.ack(acked.id, lease_token=acked.lease_token)
        deleted_id = await enqueue_ok(queue, make_job())
        held = await lease_one(queue)
        assert held.id == deleted_id
        assert await queue.delete_job(held.id)
        expired_id = await enqueue_ok(queue, make_job())
        first = await lease_one(queue)
        assert first.id == expired_id
        await outlive_lease(lease_seconds)
        second = await lease_one(queue)
        assert second.id == expired_id
        assert second.lease_token != first.lease_token

        stale = [
            (acked.id, token_of(acked)),
            (held.id, token_of(held)),
            (first.id, token_of(first)),
        ]
        lost = await other_loop.run(lambda: renewer.renew(stale, lease_seconds))
        assert sorted(lost) == sorted({acked_id, deleted_id, expired_id}), (
            f"renew() of three stale tokens reported {lost!r} as lost"
        )
        assert await queue.get_job(acked_id) is None, "renew() revived an acked job"
        assert await queue.get_job(deleted_id) is None, "renew() revived a deleted job"
        # The new holder's lease was not extended by the stale renewal: it runs out.
        await outlive_lease(lease_seconds)
        third = await lease_one(queue, self.redelivery_margin + lease_seconds)
        assert third.id == expired_id
        assert await queue.ack(third.id, lease_token=third.lease_token)

    async def test_a_handler_that_blocks_the_loop_past_its_lease_runs_once(
        self, make_queue: QueueFactory, lease_seconds: float
    ) -> None:
        runs: list[str] = []
        events: list[JobEvent] = []

        async def blocks_the_loop() -> str:
            runs.append("run")
            time.sleep(lease_seconds * 2.5)  # noqa: ASYNC251 - the mistake under test
            return "done"

        class Record:
            def observe(self, event: JobEvent) -> None:
                events.append(event)

        queue, other = await make_queue(), await make_queue()
        handlers = {_BLOCKING_TASK: blocks_the_loop}
        services = TaskWorkerServices(observers=[Record()])
        first = TaskWorker("kit-w1", queue, handlers, services=services, loop_lag_threshold=0)
        # A second worker on another handle takes the job if its lease runs out: the
        # moment the block ends, before the first worker can settle it.
        second = TaskWorker("kit-w2", other, handlers, services=services, loop_lag_threshold=0)
        job_id = await enqueue_ok(queue, make_job(_BLOCKING_TASK))
        try:
            await first.start()
            await _until(lambda: any(e.kind == STARTED for e in events), self.prompt_seconds)
            await second.start()
            await _until(
                lambda: any(e.kind == COMPLETED for e in events),
                self.prompt_seconds + lease_seconds * 3,
            )
            await asyncio.sleep(lease_seconds / 2)  # a redelivery would have started
        finally:
            await first.stop()
            await second.stop()
        assert runs == ["run"], f"the blocking handler ran {len(runs)} times, expected once"
        assert [e.kind for e in events if e.kind == COMPLETED] == [COMPLETED]
        assert await queue.get_job(job_id) is None, "the completed job is still in the queue"


async def _until(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {within:.1f} s"
        await asyncio.sleep(0.02)
