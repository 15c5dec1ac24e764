"""The producer side of `RabbitMQTaskQueue`: jobs in, confirmed messages out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, cast

from pamqp.commands import Basic

from lexigram.contracts.tasks import (
    BackendConnectionError,
    Err,
    Job,
    Ok,
    Result,
    TaskQueueError,
    TaskValidationError,
    encode_job,
)
from lexigram.tasks.backends.rabbitmq._bulk import Published
from lexigram.tasks.backends.rabbitmq._claims import Claims
from lexigram.tasks.backends.rabbitmq._connection import AMQPLink
from lexigram.tasks.backends.rabbitmq._delivery import COPY_HEADER
from lexigram.tasks.backends.rabbitmq._frames import Outgoing
from lexigram.tasks.backends.rabbitmq._idem_records import ClaimPending
from lexigram.tasks.backends.rabbitmq._options import (
    RabbitMQOptions,
    delay_bucket,
    delayed_exchange_name,
    map_priority,
)
from lexigram.tasks.backends.rabbitmq._state import Admission, JobStates

logger = logging.getLogger(__name__)

_MAX_PLUGIN_DELAY_MS = (1 << 32) - 1
_MAX_MESSAGE_ID = 255  # an AMQP short string
_SLICES_IN_FLIGHT = 2  # while the broker takes one slice, the next is being admitted
_YIELD_EVERY = 32
_FIRST_SLICE = 16  # small, so the broker starts working while the client admits the rest

JobResult = Result[str, TaskQueueError]


@dataclass(slots=True)
class _Admitted:
    """A job recorded in the state store and waiting for its publish."""

    index: int
    job: Job
    body: bytes
    delay: float


def _slices(total: int, size: int) -> list[tuple[int, int]]:
    """Index ranges of the slices of `total` jobs: a small first one, then `size` each."""
    bounds = [0, min(total, _FIRST_SLICE, size)]
    while bounds[-1] < total:
        bounds.append(min(total, bounds[-1] + size))
    return [(start, stop) for start, stop in pairwise(bounds) if stop > start]


class JobPublisher:
    """Turns jobs into confirmed messages for one queue (enqueue, requeue, delays).

    Args:
        link: The queue's connection.
        states: The queue's job-state records.
        claims: Where idempotency keys are claimed (the state store or the broker).
        options: The queue's options.
        queue_name: The queue's name.
    """

    def __init__(
        self,
        link: AMQPLink,
        states: JobStates,
        claims: Claims,
        options: RabbitMQOptions,
        queue_name: str,
    ) -> None:
        self._link = link
        self._states = states
        self._claims = claims
        self._options = options
        self._queue_name = queue_name
        self._delivery_mode = 2 if options.durable else 1
        self._enqueuing = 0  # `enqueue` calls between admission and confirm

    # -- one message -------------------------------------------------------------------

    def _priority(self, job: Job) -> int:
        options = self._options
        return map_priority(job.priority, options.max_priority, options.queue_type)

    def _properties(self, job: Job, headers: dict[str, Any] | None = None) -> Basic.Properties:
        return Basic.Properties(
            content_type="application/json",
            delivery_mode=self._delivery_mode,
            priority=self._priority(job),
            message_id=job.id,
            headers=headers,
        )

    async def _route(self, delay: float) -> str:
        """The routing key of a job due in `delay` s: the queue, or its delay bucket."""
        exp = delay_bucket(delay) if delay > 0 else None
        return self._queue_name if exp is None else await self._link.ensure_bucket(exp)

    async def publish(self, job: Job, body: bytes, delay: float, *, copy: int = 0) -> Published:
        """Publish a job now, or into the delay path when `delay` seconds remain.

        Args:
            job: The job (its id, priority).
            body: Its encoding.
            delay: Seconds until it is due.
            copy: Which copy of a delivered job this is (`COPY_HEADER`; 0 at enqueue).

        Raises:
            BackendConnectionError: No confirm within `publish_timeout`.
        """
        headers: dict[str, Any] | None = {COPY_HEADER: copy} if copy else None
        if delay > 0 and self._link.use_plugin:
            millis = min(int(delay * 1000) + 1, _MAX_PLUGIN_DELAY_MS)
            return await self._link.publish(
                body,
                exchange=delayed_exchange_name(self._queue_name),
                routing_key=self._queue_name,
                properties=self._properties(job, {**(headers or {}), "x-delay": millis}),
                mandatory=False,  # the plugin returns every mandatory message
            )
        routing_key = await self._route(delay)
        return await self._link.publish(
            body, routing_key=routing_key, properties=self._properties(job, headers)
        )

    # -- enqueue -----------------------------------------------------------------------

    async def _admit(self, job: Job, *, wait: bool = True) -> tuple[bytes, float] | JobResult:
        """Validate and record a job; return what to publish, or the final result.

        Raises:
            ClaimPending: `wait` is False and another process's claim of the job's key
                is not confirmed yet (nothing was recorded for the job).
        """
        if job.queue_name is None:
            job.queue_name = self._queue_name
        try:
            body = encode_job(job)  # validates the id's text first
        except TaskValidationError as exc:
            return Err(exc)
        if len(job.id.encode()) > _MAX_MESSAGE_ID:
            msg = (
                f"Job id {job.id[:40]!r}... is longer than {_MAX_MESSAGE_ID} bytes, which an "
                "AMQP message id cannot hold. Use a shorter id (the default is a UUID)."
            )
            return Err(TaskValidationError(msg))
        delay = 0.0 if job.scheduled_at is None else job.scheduled_at - time.time()
        key = job.idempotency_key
        if key is not None:
            ttl = max(self._options.idempotency_ttl, delay)
            holder = await self._claims.claim_idempotency(key, job.id, ttl, delay=delay, wait=wait)
            if holder is not None and holder != job.id:
                return Ok(holder)
        if await self._states.admit(job.id, body.decode(), delay) is not Admission.NEW:
            # Its message is on the broker already: the key it just took is held for good.
            await self._confirm_claims([(job, delay)])
            return Ok(job.id)
        return body, delay

    async def _confirm_claims(self, published: Iterable[tuple[Job, float]]) -> None:
        """Hold the idempotency keys of confirmed jobs for their TTL, in one write.

        A failed write is not the enqueue's failure (its job is on the queue): the key's
        pending claim then ends after `claim_window`, after which an enqueue with the same
        key is no longer recognised as a duplicate.
        """
        claims = [
            (job.idempotency_key, job.id, max(self._options.idempotency_ttl, delay), delay)
            for job, delay in published
            if job.idempotency_key is not None
        ]
        if not claims:
            return
        try:
            await self._claims.confirm_idempotency(claims)
        except Exception as exc:  # the jobs are queued whatever the store's failure
            logger.warning(
                "Could not record the idempotency keys of %d confirmed job(s) (%s: %s); an "
                "enqueue with one of these keys after %.0f s may queue a duplicate.",
                len(claims),
                type(exc).__name__,
                exc,
                self._states.claim_window,
            )

    async def _forget(self, job: Job) -> None:
        """Undo `_admit` for a job that did not reach the broker."""
        await self._states.forget(job.id)
        if job.idempotency_key is not None:
            await self._claims.release_idempotency(job.idempotency_key, job.id)

    async def _refused(self, job: Job, outcome: Published) -> Err[TaskQueueError]:
        await self._forget(job)
        reason = (
            "was unroutable (the queue does not exist)"
            if outcome is Published.RETURNED
            else "was refused (nack) by the broker"
        )
        msg = (
            f"Job {job.id!r} ({job.name!r}) {reason} on queue {self._queue_name!r}. "
            "Check the broker's logs and limits (disk/memory alarms, max-length), then retry."
        )
        return Err(TaskQueueError(msg, queue_name=self._queue_name, job_id=job.id))

    def _unconfirmed(self, job: Job) -> BackendConnectionError:
        msg = (
            f"Job {job.id!r} ({job.name!r}) got no confirm from RabbitMQ within "
            f"publish_timeout ({self._options.publish_timeout:g} s) on queue "
            f"{self._queue_name!r} although the connection is up: the broker is slow or "
            "blocking publishers (memory or disk alarm). The job may still arrive; check "
            "the broker before enqueueing it again."
        )
        return BackendConnectionError(msg, queue_name=self._queue_name, job_id=job.id)

    async def _settle(self, job: Job, outcome: Published) -> JobResult:
        if outcome is Published.UNCONFIRMED:
            await self._forget(job)
            return Err(self._unconfirmed(job))
        if outcome is not Published.ACK:
            return await self._refused(job, outcome)
        return Ok(job.id)

    async def enqueue(self, job: Job) -> JobResult:
        """Publish one job and wait for the broker's confirm (see `RabbitMQTaskQueue`)."""
        admitted = await self._admit(job)
        if not isinstance(admitted, tuple):
            return admitted
        body, delay = admitted
        self._enqueuing += 1
        try:
            outcome = Published.UNKNOWN
            # Alone, a job goes straight out (lowest latency); while other enqueues are
            # under way, it joins theirs in one socket write (`publish_together`).
            if self._enqueuing > 1 and not (delay > 0 and self._link.use_plugin):
                routing_key = await self._route(delay)
                message = Outgoing(body, routing_key, job.id, self._priority(job))
                outcome = await self._link.publish_together(message)
            if outcome is Published.UNKNOWN or self._retry(outcome):
                # Alone, or no confirm came: publish it now, waiting for a reconnect (or
                # for a quorum queue's new leader).
                outcome = await self.publish(job, body, delay)
        except BaseException:
            await self._forget(job)
            raise
        finally:
            self._enqueuing -= 1
        if outcome is Published.UNCONFIRMED:  # as `publish` does when no confirm comes
            await self._forget(job)
            raise self._unconfirmed(job)
        if outcome is Published.ACK:
            await self._confirm_claims([(job, delay)])
        return await self._settle(job, outcome)

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[JobResult]:
        """Publish jobs in slices, admitting the next slice while the broker takes this one.

        Each slice goes out through `AMQPLink.publish_many` (many messages per socket
        write, confirms pipelined); a job whose confirm did not come, and a job that
        needs the delayed-message plugin's header, is then published on its own.
        """
        results: list[JobResult | None] = [None] * len(jobs)
        admitted: list[_Admitted] = []
        one_by_one: list[_Admitted] = []
        deferred: list[int] = []  # keys another process's pending claim holds
        size = max(1, self._options.publish_window // _SLICES_IN_FLIGHT)
        in_flight: deque[asyncio.Task[None]] = deque()
        stalled = asyncio.Event()
        try:
            for start, stop in _slices(len(jobs), size):
                first = len(admitted)
                await self._admit_slice(jobs, range(start, stop), results, admitted, deferred)
                batch = await self._route_slice(admitted[first:], results, one_by_one)
                if len(in_flight) >= _SLICES_IN_FLIGHT:
                    await in_flight.popleft()
                if stalled.is_set():  # the broker blocks publishers: do not wait again
                    for item, _ in batch:
                        results[item.index] = await self._settle(item.job, Published.UNCONFIRMED)
                    continue
                in_flight.append(
                    asyncio.create_task(self._publish_slice(batch, results, one_by_one, stalled))
                )
            while in_flight:
                await in_flight.popleft()
            await self._admit_deferred(jobs, deferred, results, admitted, one_by_one)
            await self._publish_each(one_by_one, results)
        except BaseException:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            for item in admitted:
                if results[item.index] is None:
                    await self._forget(item.job)
            raise
        return cast("list[JobResult]", results)  # every slot is filled

    async def _admit_deferred(
        self,
        jobs: Sequence[Job],
        deferred: list[int],
        results: list[JobResult | None],
        admitted: list[_Admitted],
        one_by_one: list[_Admitted],
    ) -> None:
        """Admit, waiting now, the jobs whose keys another process's pending claim held.

        This call's own keys are confirmed by then, so a process waiting for them is no
        longer held up by this one: two bulk enqueues cannot wait on each other.
        """
        if not deferred:
            return
        first = len(admitted)
        await self._admit_slice(jobs, deferred, results, admitted, None)
        one_by_one.extend(admitted[first:])

    async def _admit_slice(
        self,
        jobs: Sequence[Job],
        indexes: Sequence[int],
        results: list[JobResult | None],
        admitted: list[_Admitted],
        deferred: list[int] | None,
    ) -> None:
        """Admit the jobs at `indexes`; those to publish go to `admitted`.

        With a `deferred` list, a job whose key another process's pending claim holds is
        not waited for but added there, to be admitted once this call's own jobs are
        confirmed; with None, such a claim is waited for.
        """
        wait = deferred is None
        outcomes: list[tuple[bytes, float] | JobResult | BaseException]
        if not self._states.local:
            # A shared store is a network round trip per record: take them concurrently.
            admits = (self._admit(jobs[index], wait=wait) for index in indexes)
            outcomes = await asyncio.gather(*admits, return_exceptions=True)
        else:
            outcomes = []
            for index in indexes:
                if index % _YIELD_EVERY == 0:
                    # An in-process store never suspends: let the slices in flight
                    # write their frames and take their confirms meanwhile.
                    await asyncio.sleep(0)
                outcomes.append(await self._admit(jobs[index], wait=wait))
        failure: BaseException | None = None
        for index, outcome in zip(indexes, outcomes, strict=True):
            if isinstance(outcome, tuple):
                admitted.append(_Admitted(index, jobs[index], *outcome))
            elif isinstance(outcome, ClaimPending) and deferred is not None:
                deferred.append(index)
            elif isinstance(outcome, BaseException):
                failure = failure or outcome
            else:
                results[index] = outcome
        if failure is not None:
            raise failure  # the caller forgets every job admitted so far

    async def _route_slice(
        self,
        items: list[_Admitted],
        results: list[JobResult | None],
        one_by_one: list[_Admitted],
    ) -> list[tuple[_Admitted, Outgoing]]:
        batch: list[tuple[_Admitted, Outgoing]] = []
        for item in items:
            if item.delay > 0 and self._link.use_plugin:
                one_by_one.append(item)  # needs the x-delay header
                continue
            try:
                routing_key = await self._route(item.delay)
            except TaskQueueError as exc:
                await self._forget(item.job)
                results[item.index] = Err(exc)
                continue
            job = item.job
            batch.append((item, Outgoing(item.body, routing_key, job.id, self._priority(job))))
        return batch

    async def _publish_slice(
        self,
        batch: list[tuple[_Admitted, Outgoing]],
        results: list[JobResult | None],
        one_by_one: list[_Admitted],
        stalled: asyncio.Event,
    ) -> None:
        outcomes = await self._link.publish_many([message for _, message in batch])
        await self._confirm_claims(
            (item.job, item.delay)
            for (item, _), outcome in zip(batch, outcomes, strict=True)
            if outcome is Published.ACK
        )
        for (item, _), outcome in zip(batch, outcomes, strict=True):
            if outcome is Published.UNKNOWN or self._retry(outcome):
                one_by_one.append(item)  # published again on its own, across a reconnect
                continue
            if outcome is Published.UNCONFIRMED:
                stalled.set()
            results[item.index] = await self._settle(item.job, outcome)

    def _retry(self, outcome: Published) -> bool:
        """True for a nack `publish` would retry (a quorum queue electing a leader)."""
        return outcome is Published.NACK and self._link.retries_nacks

    async def _publish_each(self, items: list[_Admitted], results: list[JobResult | None]) -> None:
        gate = asyncio.Semaphore(self._options.publish_window)
        unreachable: list[TaskQueueError] = []

        async def publish_one(item: _Admitted) -> None:
            async with gate:
                try:
                    if unreachable:  # one publish already waited publish_timeout in vain
                        raise unreachable[0]
                    outcome = await self.publish(item.job, item.body, item.delay)
                except TaskQueueError as exc:
                    if isinstance(exc, BackendConnectionError):
                        unreachable.append(exc)
                    await self._forget(item.job)
                    results[item.index] = Err(exc)
                    return
            if outcome is Published.ACK:
                await self._confirm_claims([(item.job, item.delay)])
            results[item.index] = await self._settle(item.job, outcome)

        await asyncio.gather(*(publish_one(item) for item in items))
