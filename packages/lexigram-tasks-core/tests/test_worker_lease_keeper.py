"""A handler that blocks the event loop past its lease keeps it: the lease keeper renews it.

The keeper renews from a thread of its own, so neither the blocking job nor a sibling
job of the same process is delivered again, and the blocked-loop warnings name the job
that blocked the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import pytest

from lexigram.contracts.tasks import Job, LeaseRenewingQueueProtocol
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.testing import HookRecorder

LEASE = 0.6


async def test_a_handler_that_blocks_the_loop_past_its_lease_runs_once_and_so_does_its_sibling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: Counter[str] = Counter()

    async def blocks_the_loop() -> None:
        runs["blocks_the_loop"] += 1
        time.sleep(LEASE * 3)  # noqa: ASYNC251 - the mistake this test is about

    async def sibling() -> None:
        runs["sibling"] += 1
        await asyncio.sleep(0.2)

    queue = MemoryTaskQueue(visibility_timeout=LEASE)
    hooks = HookRecorder()
    handlers = {"blocks_the_loop": blocks_the_loop, "sibling": sibling}
    first = TaskWorker(
        "w1", queue, handlers, services=TaskWorkerServices(hooks=hooks), loop_lag_threshold=0.3
    )
    # A second worker of the same queue: it takes any job whose lease ran out.
    second = TaskWorker("w2", queue, handlers, services=TaskWorkerServices(hooks=hooks))
    sibling_job, blocking_job = Job(name="sibling"), Job(name="blocks_the_loop")
    await first.start()
    await asyncio.sleep(0.15)  # the lag monitor has ticked
    (await queue.enqueue(sibling_job)).unwrap()
    (await queue.enqueue(blocking_job)).unwrap()
    with caplog.at_level(logging.WARNING):
        await hooks.wait_until(lambda: blocking_job.id in hooks.ids("task.started"))
        await second.start()
        await hooks.wait_until(lambda: len(hooks.ids("task.completed")) == 2, timeout=10)
        await asyncio.sleep(LEASE)  # a redelivery would have started by now
    await first.stop()
    await second.stop()

    assert runs == {"blocks_the_loop": 1, "sibling": 1}
    assert await queue.count(queue.queue_name) == 0
    messages = [r.getMessage() for r in caplog.records]
    during = [m for m in messages if "has been blocked for" in m]
    assert len(during) == 1
    assert f"by job {blocking_job.id} (task 'blocks_the_loop')" in during[0]
    after = [m for m in messages if "was blocked for" in m]
    assert len(after) == 1
    assert f"by job {blocking_job.id}" in after[0]
    assert not [m for m in messages if "lost its lease" in m]


async def test_the_keeper_stops_a_handler_whose_job_was_deleted() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def waits() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    queue = MemoryTaskQueue(visibility_timeout=0.3)
    assert isinstance(queue, LeaseRenewingQueueProtocol)
    worker = TaskWorker("w1", queue, {"waits": waits}, loop_lag_threshold=0)
    job = Job(name="waits")
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await asyncio.wait_for(started.wait(), 5)
    # Deleted without an announcement: only the keeper's renewal can tell the worker.
    assert await queue.delete_job(job.id)
    await asyncio.wait_for(cancelled.wait(), 5)
    await worker.stop()


async def test_a_lease_is_let_go_once_the_keeper_stopped() -> None:
    queue = MemoryTaskQueue(visibility_timeout=0.2)
    (await queue.enqueue(Job(name="held"))).unwrap()
    job = await queue.dequeue()
    assert job is not None
    assert job.lease_token is not None
    renewer = queue.open_lease_renewer()
    assert await renewer.renew([(job.id, job.lease_token)], 0.2) == []
    await asyncio.sleep(0.1)
    assert await renewer.renew([(job.id, job.lease_token)], 0.2) == []
    await asyncio.sleep(0.15)  # past the first deadline, within the renewal
    assert await queue.extend_lease(job.id, lease_token=job.lease_token)
    await renewer.close()
    await asyncio.sleep(0.25)
    assert not await queue.ack(job.id, lease_token=job.lease_token)
    again = await queue.dequeue()
    assert again is not None
    assert again.id == job.id
    assert again.delivery_count == 2
    assert await renewer.renew([(job.id, job.lease_token)], 0.2) == [job.id]


class _RefusedRenewer:
    """A renewer whose own connection the server refuses (too many connections)."""

    async def renew(self, leases: object, seconds: float) -> list[str]:
        msg = "too many connections for role"
        raise ConnectionRefusedError(msg)

    async def close(self) -> None:
        return None


class _QueueWhoseRenewerIsRefused(MemoryTaskQueue):
    def open_lease_renewer(self) -> _RefusedRenewer:  # type: ignore[override]
        return _RefusedRenewer()


async def test_leases_the_keeper_cannot_renew_are_renewed_by_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The keeper's own connection was refused while the queue's pool worked: the leases
    # ran out, and the job ran again beside itself every lease until it was dead-lettered.
    runs: Counter[str] = Counter()

    async def slow() -> None:
        runs["slow"] += 1
        await asyncio.sleep(LEASE * 4)

    queue = _QueueWhoseRenewerIsRefused(visibility_timeout=LEASE)
    hooks = HookRecorder()
    first = TaskWorker("w1", queue, {"slow": slow}, services=TaskWorkerServices(hooks=hooks))
    second = TaskWorker("w2", queue, {"slow": slow}, services=TaskWorkerServices(hooks=hooks))
    job = Job(name="slow")
    await first.start()
    (await queue.enqueue(job)).unwrap()
    with caplog.at_level(logging.WARNING):
        await hooks.wait_until(lambda: job.id in hooks.ids("task.started"))
        await second.start()
        await hooks.wait_until(lambda: job.id in hooks.ids("task.completed"), timeout=10)
    await first.stop()
    await second.stop()
    assert runs == {"slow": 1}
    warnings = [r.getMessage() for r in caplog.records if "could not renew" in r.getMessage()]
    assert len(warnings) == 1  # once, not every interval
    assert "meanwhile the worker's event loop renews them through the queue" in warnings[0]
