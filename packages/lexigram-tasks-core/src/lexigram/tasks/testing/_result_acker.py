"""Conformance of the optional one-call ack and result (`ResultAckingQueueProtocol`).

`QueueResultAckerConformance` checks what a worker relies on when its queue acks a
succeeded job and stores its result in one call: the queue offers the function for the
result store its backend builds beside it and not for a store it cannot reach (the core's
in-memory one); a delivery that holds its lease is acked (the job is gone) and its result
stored; a token that does not hold changes nothing and stores nothing, and the holder can
still settle; calls made together each get their own answer; a result already stored
for the job (its id run again) is replaced. A backend without the capability leaves the
class out.

The backend supplies one more fixture, ``make_paired_result_store``: given a queue from
``make_queue``, the result store its backend would build for that queue (closed and
cleaned up by the fixture).
"""

# ruff: noqa: S101 - the kit is pytest tests: assert is how they check

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from lexigram.contracts.tasks import (
    Job,
    JobResult,
    JobStatus,
    ResultAcker,
    ResultAckingQueueProtocol,
    ResultStoreProtocol,
    TaskQueueProtocol,
)
from lexigram.tasks.results import InMemoryResultStore
from lexigram.tasks.testing._base import (
    QueueConformanceBase,
    enqueue_ok,
    lease_one,
    make_job,
    status_of,
    token_of,
)

PairedStoreFactory = Callable[[TaskQueueProtocol], Awaitable[ResultStoreProtocol]]
"""``await make_paired_result_store(queue)``: the result store built beside `queue`."""

_ANOTHER_DELIVERY = "another-delivery"  # a lease token no delivery holds


def _result(job: Job, data: object) -> JobResult:
    return JobResult(success=True, data=data, id=job.id, name=job.name, completed_at=1.0)


async def _acker(
    queue: TaskQueueProtocol, make_paired_result_store: PairedStoreFactory
) -> tuple[ResultAcker, ResultStoreProtocol]:
    assert isinstance(queue, ResultAckingQueueProtocol), (
        f"{type(queue).__name__} does not implement ResultAckingQueueProtocol "
        "(result_acker); leave QueueResultAckerConformance out of its test class"
    )
    store = await make_paired_result_store(queue)
    acker = queue.result_acker(store)
    assert acker is not None, (
        "result_acker() returned None for the result store built beside the queue; "
        "make_paired_result_store must return the store the backend pairs with it"
    )
    return acker, store


class QueueResultAckerConformance(QueueConformanceBase):
    """A succeeded job acked and its result stored in one call: held, refused, together.

    Fixtures:
        make_paired_result_store: Supplied by the backend (see the module docstring).
    """

    async def test_only_a_store_the_queue_can_reach_gets_an_acker(
        self, queue: TaskQueueProtocol, make_paired_result_store: PairedStoreFactory
    ) -> None:
        await _acker(queue, make_paired_result_store)
        assert isinstance(queue, ResultAckingQueueProtocol)
        assert queue.result_acker(InMemoryResultStore()) is None, (
            "result_acker() offered to store into the core's in-memory store, which no "
            "backend call can reach; it must return None for a store it cannot write"
        )

    async def test_a_held_delivery_is_acked_and_its_result_stored(
        self, queue: TaskQueueProtocol, make_paired_result_store: PairedStoreFactory
    ) -> None:
        acker, store = await _acker(queue, make_paired_result_store)
        job_id = await enqueue_ok(queue, make_job())
        job = await lease_one(queue)
        assert job.id == job_id
        assert await acker(job.id, _result(job, {"n": 1}), token_of(job)) is True
        stored = await store.get(job.id)
        assert stored is not None, "the acker answered True but stored no result"
        assert stored.success
        assert stored.data == {"n": 1}
        left = await queue.get_job(job.id)
        if left is not None:
            assert status_of(left) is JobStatus.COMPLETED, (
                f"job {job.id} is still {status_of(left)} after its ack"
            )
        assert await queue.dequeue_batch(1, timeout=0) == []

    async def test_a_token_that_does_not_hold_changes_nothing(
        self, queue: TaskQueueProtocol, make_paired_result_store: PairedStoreFactory
    ) -> None:
        acker, store = await _acker(queue, make_paired_result_store)
        await enqueue_ok(queue, make_job())
        job = await lease_one(queue)
        assert await acker(job.id, _result(job, "stale"), _ANOTHER_DELIVERY) is False
        assert await store.get(job.id) is None, "a refused ack stored its result anyway"
        still = await queue.get_job(job.id)
        assert still is not None, "a refused ack removed the job"
        assert status_of(still) is JobStatus.RUNNING
        assert await acker(job.id, _result(job, "held"), token_of(job)) is True
        stored = await store.get(job.id)
        assert stored is not None
        assert stored.data == "held"

    async def test_calls_made_together_each_get_their_own_answer(
        self, queue: TaskQueueProtocol, make_paired_result_store: PairedStoreFactory
    ) -> None:
        acker, store = await _acker(queue, make_paired_result_store)
        for _ in range(20):
            await enqueue_ok(queue, make_job())
        jobs = [await lease_one(queue) for _ in range(20)]
        # Every fourth call names a delivery that is not the job's: refused, not stored.
        answers = await asyncio.gather(
            *(
                acker(job.id, _result(job, n), token_of(job) if n % 4 else _ANOTHER_DELIVERY)
                for n, job in enumerate(jobs)
            )
        )
        assert answers == [n % 4 != 0 for n in range(20)]
        for n, job in enumerate(jobs):
            stored = await store.get(job.id)
            if n % 4:
                assert stored is not None
                assert stored.data == n
            else:
                assert stored is None, f"job {job.id}'s refused ack stored its result"

    async def test_a_result_already_stored_for_the_job_is_replaced(
        self, queue: TaskQueueProtocol, make_paired_result_store: PairedStoreFactory
    ) -> None:
        # A job id run again once finished (a dead letter retried, an id the app chose)
        # finds its earlier result: the new one replaces it, in a call with other jobs too.
        acker, store = await _acker(queue, make_paired_result_store)
        jobs = []
        for _ in range(10):
            await enqueue_ok(queue, make_job())
            jobs.append(await lease_one(queue))
        again = jobs[3]
        await store.store(again.id, _result(again, "the earlier run"))
        answers = await asyncio.gather(
            *(acker(job.id, _result(job, n), token_of(job)) for n, job in enumerate(jobs))
        )
        assert answers == [True] * 10
        for n, job in enumerate(jobs):
            stored = await store.get(job.id)
            assert stored is not None, f"job {job.id}'s result was not stored"
            assert stored.data == n, f"job {job.id} kept {stored.data!r}, not its new result"
        # Later calls, with no earlier result, still store theirs.
        await enqueue_ok(queue, make_job())
        later = await lease_one(queue)
        assert await acker(later.id, _result(later, "later"), token_of(later)) is True
        stored = await store.get(later.id)
        assert stored is not None
        assert stored.data == "later"
