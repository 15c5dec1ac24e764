"""Conformance: lease tokens fence every delivery.

Every `dequeue` sets `Job.lease_token` to a token naming that one delivery. `ack`,
`nack`, `extend_lease` and `retry_later` made with a token that no longer holds the
lease (it ran out, the job was handed to someone else, settled or deleted) return
False and change nothing, so a worker that stalled past its lease can never settle,
requeue or keep the delivery of the worker that took the job over.
"""

# ruff: noqa: S101 - the kit is a set of pytest tests; assert is how they check

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from lexigram.contracts.tasks import Job, JobStatus, TaskQueueProtocol
from lexigram.tasks.testing._base import (
    QueueConformanceBase,
    QueueFactory,
    detached,
    enqueue_ok,
    lease_one,
    make_job,
    next_job,
    outlive_lease,
    status_of,
    token_of,
)

# The calls a holder whose lease ran out might still make (test ids of the late-call test).
_LATE_CALLS = (
    "extend",
    "extend-without-token",
    "ack",
    "nack-requeue",
    "nack-discard",
    "retry-later",
)


class QueueFencingConformance(QueueConformanceBase):
    """A stale lease token is refused by `ack`, `nack`, `extend_lease` and `retry_later`."""

    async def _redelivered(
        self, make_queue: QueueFactory, lease_seconds: float
    ) -> tuple[TaskQueueProtocol, Job, TaskQueueProtocol, Job]:
        """Lease a job on one handle, let the lease run out, lease it again on another.

        Returns:
            (stale handle, stale holder's copy, new handle, new delivery).
        """
        stale_queue = await make_queue()
        new_queue = await make_queue()
        job = make_job()
        await enqueue_ok(stale_queue, job)
        first = await lease_one(stale_queue)
        stale = detached(first)
        token_of(stale)
        again = await next_job(new_queue, lease_seconds + self.prompt_seconds)
        assert again is not None, "a job whose lease expired was never delivered again"
        assert again.id == job.id
        assert token_of(again) != stale.lease_token, (
            "a redelivery kept the lease token of the delivery before it"
        )
        return stale_queue, stale, new_queue, again

    async def test_every_delivery_carries_its_own_token(self, queue: TaskQueueProtocol) -> None:
        """`dequeue` and `dequeue_batch` set a token, and a new one on every delivery."""
        job = make_job()
        await enqueue_ok(queue, job)
        first = await lease_one(queue)
        first_token = token_of(first)
        assert await queue.nack(job.id, requeue=True, lease_token=first_token) is True
        second = await queue.dequeue()
        assert second is not None, "a job nacked with requeue=True was not ready again"
        second_token = token_of(second)
        assert second_token != first_token, "two deliveries of one job share a lease token"
        assert "lease_token" not in second.to_dict(), "lease_token leaked into to_dict()"
        assert await queue.ack(job.id, lease_token=second_token) is True

    async def test_holder_settles_with_its_token(self, queue: TaskQueueProtocol) -> None:
        """With the current token every call returns True; a settled token then gets False."""
        acked, nacked, retried = make_job(priority=3), make_job(priority=2), make_job(priority=1)
        for job in (acked, nacked, retried):
            await enqueue_ok(queue, job)
        held = [await lease_one(queue) for _ in range(3)]
        assert [job.id for job in held] == [acked.id, nacked.id, retried.id]
        tokens = [token_of(job) for job in held]
        for job, token in zip(held, tokens, strict=True):
            assert await queue.extend_lease(job.id, lease_token=token) is True, (
                "extend_lease with the holder's own token returned False"
            )
        assert await queue.ack(acked.id, lease_token=tokens[0]) is True
        assert await queue.ack(acked.id, lease_token=tokens[0]) is False, (
            "a second ack of the same delivery returned True"
        )
        assert await queue.nack(nacked.id, requeue=False, lease_token=tokens[1]) is True
        assert await queue.nack(nacked.id, requeue=True, lease_token=tokens[1]) is False, (
            "a nack after the delivery was discarded returned True"
        )
        assert await queue.get_job(nacked.id) is None, "a nack of a settled token revived it"
        failed = detached(held[2])
        failed.mark_retrying()
        assert await queue.retry_later(failed, delay=3600) is True
        assert await queue.extend_lease(retried.id, lease_token=tokens[2]) is False, (
            "the lease of a job handed back by retry_later could still be extended"
        )
        assert await queue.count(queue.queue_name, JobStatus.RUNNING) == 0

    async def test_stale_holder_cannot_ack_after_redelivery(
        self, make_queue: QueueFactory, lease_seconds: float
    ) -> None:
        """The first holder's ack is refused and does not end the new holder's delivery."""
        stale_queue, stale, new_queue, again = await self._redelivered(make_queue, lease_seconds)
        refused = await stale_queue.ack(stale.id, lease_token=stale.lease_token)
        assert refused is False, "a stale holder acked a job redelivered to someone else"
        assert await new_queue.get_job(stale.id) is not None, "the stale ack removed the job"
        assert await new_queue.count(new_queue.queue_name, JobStatus.RUNNING) == 1
        assert await new_queue.extend_lease(again.id, lease_token=again.lease_token) is True, (
            "after a refused stale ack the new holder's lease could not be extended"
        )
        assert await new_queue.ack(again.id, lease_token=again.lease_token) is True
        assert await new_queue.count(new_queue.queue_name) == 0

    async def test_stale_holder_cannot_nack_after_redelivery(
        self, make_queue: QueueFactory, lease_seconds: float
    ) -> None:
        """Neither a requeueing nor a discarding nack with a stale token changes anything."""
        stale_queue, stale, new_queue, again = await self._redelivered(make_queue, lease_seconds)
        assert await stale_queue.nack(stale.id, requeue=True, lease_token=stale.lease_token) is (
            False
        ), "a stale holder requeued a job redelivered to someone else"
        assert await new_queue.dequeue() is None, "a stale nack made a held job ready again"
        assert await stale_queue.nack(stale.id, requeue=False, lease_token=stale.lease_token) is (
            False
        ), "a stale holder discarded a job redelivered to someone else"
        found = await new_queue.get_job(stale.id)
        assert found is not None, "a stale nack(requeue=False) removed the job"
        assert status_of(found) is JobStatus.RUNNING
        assert await new_queue.ack(again.id, lease_token=again.lease_token) is True

    async def test_stale_holder_cannot_extend_after_redelivery(
        self, make_queue: QueueFactory, lease_seconds: float
    ) -> None:
        """A stale heartbeat is refused and does not lengthen the new holder's lease."""
        stale_queue, stale, _, again = await self._redelivered(make_queue, lease_seconds)
        extended = await stale_queue.extend_lease(
            stale.id, lease_seconds * 10, lease_token=stale.lease_token
        )
        assert extended is False, "a stale holder extended a lease it no longer holds"
        # The new holder now stalls too: its lease must still end on time.
        third = await make_queue()
        later = await next_job(third, lease_seconds + self.redelivery_margin)
        assert later is not None, "a stale heartbeat kept the new holder's lease alive"
        assert later.id == again.id
        assert await third.ack(later.id, lease_token=later.lease_token) is True

    async def test_stale_holder_cannot_retry_later_after_redelivery(
        self, make_queue: QueueFactory, lease_seconds: float
    ) -> None:
        """A stale `retry_later` neither requeues the job nor writes its retry state."""
        stale_queue, stale, new_queue, again = await self._redelivered(make_queue, lease_seconds)
        stale.mark_retrying()
        stale.last_error = "RuntimeError: from the stale holder"
        assert await stale_queue.retry_later(stale, delay=0.0) is False, (
            "a stale holder's retry_later returned True"
        )
        assert await new_queue.dequeue() is None, "a stale retry_later made a held job ready"
        found = await new_queue.get_job(stale.id)
        assert found is not None, "a stale retry_later removed the job"
        assert status_of(found) is JobStatus.RUNNING
        assert found.retry_count == 0, "a stale retry_later wrote its retry_count"
        assert found.last_error is None, "a stale retry_later wrote its last_error"
        assert await new_queue.ack(again.id, lease_token=again.lease_token) is True

    @pytest.mark.parametrize("first", _LATE_CALLS)
    async def test_expired_lease_refuses_its_token_before_redelivery(
        self, queue: TaskQueueProtocol, lease_seconds: float, first: str
    ) -> None:
        """Once a lease ran out, its token is refused even though nobody took the job yet.

        Extending it is False (the worker must stop: another consumer may be handed the
        job at any moment), and ack, nack and retry_later change nothing: the job is
        delivered again as if the holder had died. Each call is tried first in one run,
        since a backend may notice the expiry only on the first call that looks.
        """
        job = make_job()
        await enqueue_ok(queue, job)
        held = await lease_one(queue)
        token = token_of(held)
        first_count = held.delivery_count
        late = detached(held)
        late.mark_retrying()
        late.last_error = "RuntimeError: from the late holder"
        calls: dict[str, Callable[[], Awaitable[bool]]] = {
            "extend": lambda: queue.extend_lease(job.id, lease_token=token),
            "extend-without-token": lambda: queue.extend_lease(job.id),
            "ack": lambda: queue.ack(job.id, lease_token=token),
            "nack-requeue": lambda: queue.nack(job.id, requeue=True, lease_token=token),
            "nack-discard": lambda: queue.nack(job.id, requeue=False, lease_token=token),
            "retry-later": lambda: queue.retry_later(late, delay=3600),
        }
        await outlive_lease(lease_seconds)
        for name in (first, *(name for name in _LATE_CALLS if name != first)):
            assert await calls[name]() is False, (
                f"{name} with a lease that had run out returned True"
            )
        again = await next_job(queue, self.prompt_seconds)
        assert again is not None, "a job whose late holder was refused was never delivered again"
        assert again.id == job.id
        assert again.retry_count == 0, "a refused retry_later wrote its retry_count"
        assert again.last_error is None, "a refused retry_later wrote its last_error"
        assert again.delivery_count == first_count + 1
        assert token_of(again) != token
        assert await queue.ack(again.id, lease_token=again.lease_token) is True

    async def test_deleted_job_refuses_its_holder(self, queue: TaskQueueProtocol) -> None:
        """After `delete_job` the holder's token settles nothing and revives nothing."""
        job = make_job()
        await enqueue_ok(queue, job)
        held = await lease_one(queue)
        token = token_of(held)
        gone = detached(held)
        assert await queue.delete_job(job.id) is True
        assert await queue.extend_lease(job.id, lease_token=token) is False
        assert await queue.nack(job.id, requeue=True, lease_token=token) is False
        gone.mark_retrying()
        assert await queue.retry_later(gone, delay=0.0) is False
        assert await queue.ack(job.id, lease_token=token) is False
        assert await queue.dequeue() is None, "a call with a deleted job's token revived it"
        assert await queue.get_job(job.id) is None
        assert await queue.count(queue.queue_name) == 0


__all__ = ["QueueFencingConformance"]
