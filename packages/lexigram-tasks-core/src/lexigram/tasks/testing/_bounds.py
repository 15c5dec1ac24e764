"""Conformance: timing promises, each within a margin a backend may widen explicitly.

- a `dequeue_batch` blocked on an empty queue wakes within `wake_margin` of an enqueue,
  a requeue or a `retry_later` made through another queue object;
- a delayed job (or a retry's delay) is handed out within `due_margin` of its time;
- an expired lease is handed out again within `lease_seconds + redelivery_margin`,
  and not before the lease ends;
- `lease_seconds` is declared, and `count(RUNNING)` excludes expired leases.
"""

# ruff: noqa: S101, PLR2004 - the kit is pytest tests: asserts on literal expected counts

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from lexigram.contracts.tasks import JobStatus, TaskQueueProtocol
from lexigram.tasks.testing._base import (
    CLOCK_TOLERANCE,
    QueueConformanceBase,
    QueueFactory,
    detached,
    enqueue_ok,
    lease_one,
    make_job,
    outlive_lease,
)

# Wake-ups measured per trigger, and how many of them must be within `wake_margin`:
# one slow wake-up on a busy machine is forgiven, a sleep loop is not.
_WAKE_TRIALS = 5
_WAKE_REQUIRED = 4
# The test waits this long after the consumer starts before it enqueues, a different
# time in each trial, so that a consumer polling on a timer shows its period.
_WAKE_OFFSETS = tuple(0.02 + 0.02 * trial for trial in range(_WAKE_TRIALS))

Trigger = Callable[[], Awaitable[None]]


class QueueBoundsConformance(QueueConformanceBase):
    """Wake-ups, due jobs and redeliveries happen within the class's stated margins."""

    async def _wake_latencies(
        self,
        consumer: TaskQueueProtocol,
        prepare: Callable[[], Awaitable[Trigger]],
        what: str,
    ) -> None:
        """Measure `_WAKE_TRIALS` wake-ups of `consumer` by a trigger; check the margin.

        `prepare` runs before the consumer starts waiting and returns the trigger (an
        enqueue, nack or retry_later through another queue object).
        """
        wait = max(1.0, self.wake_margin * 4)
        latencies: list[float] = []
        for offset in _WAKE_OFFSETS:
            trigger = await prepare()
            waiting = asyncio.create_task(consumer.dequeue_batch(1, timeout=wait))
            await asyncio.sleep(offset)
            assert not waiting.done() or not waiting.result(), (
                f"dequeue_batch returned a job before the {what}"
            )
            await trigger()
            triggered = time.monotonic()
            batch = await waiting
            latency = time.monotonic() - triggered if batch else math.inf
            if not batch:
                # Take the job the consumer missed so that the next trial starts empty.
                batch = await consumer.dequeue_batch(1, timeout=self.prompt_seconds)
                assert batch, f"the job of the {what} was never delivered"
            job = batch[0]
            assert await consumer.ack(job.id, lease_token=job.lease_token) is True
            latencies.append(latency)
            if sum(1 for value in latencies if value > self.wake_margin) > (
                _WAKE_TRIALS - _WAKE_REQUIRED
            ):
                break
        within = sum(1 for value in latencies if value <= self.wake_margin)
        shown = ", ".join("never" if math.isinf(v) else f"{v:.3f}s" for v in latencies)
        assert within >= _WAKE_REQUIRED, (
            f"a blocked dequeue_batch woke after a {what} through another queue object "
            f"in {shown}; at least {_WAKE_REQUIRED} of {_WAKE_TRIALS} must be within "
            f"wake_margin={self.wake_margin}s (wait on the backend's wake-up mechanism, "
            "or widen wake_margin explicitly and document it)"
        )

    async def test_lease_seconds_is_declared(
        self, queue: TaskQueueProtocol, lease_seconds: float
    ) -> None:
        """`lease_seconds` is a positive number: the lease `make_queue` was asked for."""
        declared = queue.lease_seconds
        assert isinstance(declared, int | float), f"lease_seconds is {declared!r}, not a number"
        assert not isinstance(declared, bool)
        assert math.isfinite(declared), f"lease_seconds is {declared!r}"
        assert declared > 0, f"lease_seconds is {declared!r}; it must be positive"
        assert math.isclose(declared, lease_seconds, rel_tol=0.01), (
            f"lease_seconds is {declared!r} but make_queue was asked for {lease_seconds!r}; "
            "the worker heartbeats every lease_seconds / 3, so it must be the real lease"
        )

    async def test_blocked_dequeue_wakes_on_enqueue_within_margin(
        self, queue: TaskQueueProtocol, make_queue: QueueFactory
    ) -> None:
        """An enqueue through another queue object wakes a blocked consumer promptly."""
        producer = await make_queue()

        async def prepare() -> Trigger:
            async def trigger() -> None:
                await enqueue_ok(producer, make_job())

            return trigger

        await self._wake_latencies(queue, prepare, "enqueue")

    async def test_blocked_dequeue_wakes_on_nack_within_margin(
        self, queue: TaskQueueProtocol, make_queue: QueueFactory
    ) -> None:
        """A `nack(requeue=True)` through another queue object wakes a blocked consumer."""
        other = await make_queue()

        async def prepare() -> Trigger:
            await enqueue_ok(other, make_job())
            held = await lease_one(other)

            async def trigger() -> None:
                assert await other.nack(held.id, requeue=True, lease_token=held.lease_token)

            return trigger

        await self._wake_latencies(queue, prepare, "nack(requeue=True)")

    async def test_blocked_dequeue_wakes_on_retry_later_within_margin(
        self, queue: TaskQueueProtocol, make_queue: QueueFactory
    ) -> None:
        """A `retry_later(job, delay=0)` through another queue object wakes a consumer."""
        other = await make_queue()

        async def prepare() -> Trigger:
            await enqueue_ok(other, make_job())
            held = detached(await lease_one(other))

            async def trigger() -> None:
                held.mark_retrying()
                assert await other.retry_later(held, delay=0.0)

            return trigger

        await self._wake_latencies(queue, prepare, "retry_later(delay=0)")

    async def test_delayed_job_handed_out_within_due_margin(
        self, queue: TaskQueueProtocol, make_queue: QueueFactory
    ) -> None:
        """A consumer blocked before a delayed job was enqueued gets it when it falls due."""
        producer = await make_queue()
        delay = 0.4
        waiting = asyncio.create_task(
            queue.dequeue_batch(1, timeout=delay + self.due_margin + self.prompt_seconds)
        )
        await asyncio.sleep(0.05)
        job = make_job(scheduled_at=time.time() + delay)
        started = time.monotonic()
        await enqueue_ok(producer, job)
        batch = await waiting
        elapsed = time.monotonic() - started
        assert [leased.id for leased in batch] == [job.id], "the delayed job never arrived"
        assert elapsed >= delay - CLOCK_TOLERANCE, f"a job due in {delay}s came at {elapsed:.2f}s"
        assert elapsed <= delay + self.due_margin, (
            f"a job due in {delay}s came at {elapsed:.2f}s, beyond due_margin="
            f"{self.due_margin}s: a blocked consumer must wake when the next delayed job "
            "falls due (or widen due_margin explicitly and document it)"
        )

    async def test_retry_delay_ends_within_due_margin(
        self, queue: TaskQueueProtocol, make_queue: QueueFactory
    ) -> None:
        """A job handed back by `retry_later(delay=...)` returns within the due margin."""
        other = await make_queue()
        job = make_job()
        await enqueue_ok(other, job)
        held = detached(await lease_one(other))
        held.mark_retrying()
        delay = 0.4
        waiting = asyncio.create_task(
            queue.dequeue_batch(1, timeout=delay + self.due_margin + self.prompt_seconds)
        )
        await asyncio.sleep(0.05)
        started = time.monotonic()
        assert await other.retry_later(held, delay=delay) is True
        batch = await waiting
        elapsed = time.monotonic() - started
        assert [leased.id for leased in batch] == [job.id], "the retried job never came back"
        assert elapsed >= delay - CLOCK_TOLERANCE, f"a {delay}s retry came at {elapsed:.2f}s"
        assert elapsed <= delay + self.due_margin, (
            f"a {delay}s retry came back at {elapsed:.2f}s, beyond due_margin={self.due_margin}s"
        )

    async def test_expired_lease_redelivered_within_margin(
        self, make_queue: QueueFactory, lease_seconds: float
    ) -> None:
        """A blocked consumer gets an expired job after the lease, within the margin."""
        holder = await make_queue()
        survivor = await make_queue()
        job = make_job()
        await enqueue_ok(holder, job)
        before = time.monotonic()
        await lease_one(holder)
        after = time.monotonic()
        waiting = asyncio.create_task(
            survivor.dequeue_batch(
                1, timeout=lease_seconds + self.redelivery_margin + self.prompt_seconds
            )
        )
        batch = await waiting
        arrived = time.monotonic()
        assert [leased.id for leased in batch] == [job.id], "the expired job never came back"
        assert arrived - before >= lease_seconds - CLOCK_TOLERANCE, (
            f"a job with a {lease_seconds}s lease was handed out again after "
            f"{arrived - before:.2f}s, before its lease ended"
        )
        late = arrived - after - lease_seconds
        assert late <= self.redelivery_margin, (
            f"an expired lease was handed out again {late:.2f}s after it ended, beyond "
            f"redelivery_margin={self.redelivery_margin}s: a blocked consumer must wake "
            "when the next lease runs out (or widen redelivery_margin explicitly)"
        )

    async def test_count_running_excludes_expired_leases(
        self, queue: TaskQueueProtocol, lease_seconds: float
    ) -> None:
        """A lease that ran out counts as waiting, not RUNNING, before anyone takes it."""
        name = queue.queue_name
        expiring, kept = make_job(priority=2), make_job(priority=1)
        await enqueue_ok(queue, expiring)
        await enqueue_ok(queue, kept)
        held = await lease_one(queue)
        assert held.id == expiring.id
        assert await queue.count(name, JobStatus.RUNNING) == 1
        await outlive_lease(lease_seconds)
        running = await queue.count(name, JobStatus.RUNNING)
        assert running == 0, f"count(RUNNING) is {running} after the only lease expired"
        assert await queue.count(name, JobStatus.PENDING) == 2
        assert await queue.count(name) == 2


__all__ = ["QueueBoundsConformance"]
