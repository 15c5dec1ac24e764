"""Putting a delivered job back as a new message: requeues, retries and send-backs.

A job that waits again is published anew (confirmed) and its delivery then acked,
rather than rejected back to the broker: the copy carries the job as it is now (its
delivery count, retry state, delay), so its next delivery counts exactly.

A holder killed between the copy's confirm and the ack leaves two messages of the job,
and each would run its own line of attempts. So each copy counts one more than the
message it replaces (`COPY_HEADER`), the count is recorded once the copy is confirmed
(`JobStates.copied`), and a message of an older copy is acked unrun
(`JobStates.superseded`). Dropping a message needs a newer copy confirmed, which carries
the job on, so a job is never dropped without another message of it; with the
in-process state store the record dies with the holder, and both messages run.
"""

from __future__ import annotations

import asyncio
import logging
import time

from lexigram.contracts.tasks import Job, TaskQueueError, encode_job
from lexigram.tasks.backends.rabbitmq._bulk import Published
from lexigram.tasks.backends.rabbitmq._connection import CONNECTION_ERRORS
from lexigram.tasks.backends.rabbitmq._consumer import DeliveryBuffer
from lexigram.tasks.backends.rabbitmq._delivery import Delivery
from lexigram.tasks.backends.rabbitmq._leases import DeliveryLeases
from lexigram.tasks.backends.rabbitmq._publisher import JobPublisher
from lexigram.tasks.backends.rabbitmq._state import JobStates

# Its records keep the logger of `_queue`, where this code was before, so that logging
# configurations naming that logger still see them.
logger = logging.getLogger("lexigram.tasks.backends.rabbitmq._queue")

_REBUCKET_ERRORS: tuple[type[Exception], ...] = (TaskQueueError, *CONNECTION_ERRORS)


class Republisher:
    """Publishes delivered jobs again for one queue, then settles their deliveries.

    Args:
        publisher: The queue's publisher.
        buffer: The queue's consumer buffer (acks and rejects).
        states: The queue's job-state records.
        leases: The queue's leases (they drop the older copies of re-published jobs).
    """

    def __init__(
        self,
        publisher: JobPublisher,
        buffer: DeliveryBuffer,
        states: JobStates,
        leases: DeliveryLeases,
    ) -> None:
        self._publisher = publisher
        self._buffer = buffer
        self._states = states
        self._leases = leases

    async def send_back(self, delivery: Delivery) -> None:
        """Re-publish a delivery that is not handed out now, then ack it.

        Used for a job that came back from a delay bucket before it is due (it goes on
        to the next smaller bucket), a classic-queue redelivery (its count raised, so
        the next delivery counts exactly), and jobs an idle consumer hands back. The
        delivery itself is not counted: the copy carries the count of deliveries that
        really happened.
        """
        if delivery.stale:
            # Its channel is closing or closed: the broker requeues the message itself,
            # and a copy published now would be a second one.
            return
        # Only a redelivery is looked up here: a copy on its way through the delay buckets
        # would cost a read at every hop, and is looked up once, when it is handed out.
        if delivery.redelivered and await self._leases.drop_superseded([delivery]):
            return
        job = delivery.job
        remaining = (job.scheduled_at or 0.0) - time.time()
        job.delivery_count -= 1
        try:
            outcome = await self._publisher.publish(
                job, encode_job(job), remaining, copy=delivery.copy + 1
            )
        except _REBUCKET_ERRORS as exc:
            logger.warning("Could not re-publish job %s (%s); it comes back later.", job.id, exc)
            outcome = Published.NACK
        if outcome is Published.ACK:
            await self._copied(delivery, remaining)
            await self._buffer.ack(delivery)
            return
        await asyncio.sleep(1.0)  # do not spin on a broker that keeps refusing
        await self._buffer.reject(delivery, requeue=True)

    async def requeue(self, job: Job, delivery: Delivery, *, delay: float) -> None:
        """Publish `job` (confirmed) to wait `delay` s, then ack its delivery.

        If the publish fails the delivery is rejected back to the queue instead.
        """
        body = encode_job(job)
        # Recorded first: once published, the job may be delivered and finished at once.
        await self._states.requeued(
            job.id,
            body.decode(),
            retrying=job.retry_count > 0,
            delay=delay,
            idempotency_key=job.idempotency_key,
        )
        try:
            outcome = await self._publisher.publish(job, body, delay, copy=delivery.copy + 1)
        except TaskQueueError:
            outcome = Published.NACK
            logger.warning(
                "Could not requeue job %s; the broker redelivers it.", job.id, exc_info=True
            )
        if outcome is not Published.ACK:
            await self._buffer.reject(delivery, requeue=True)
            return
        await self._copied(delivery, delay)
        await self._buffer.ack(delivery)

    async def _copied(self, delivery: Delivery, delay: float) -> None:
        """Record the confirmed copy of `delivery`; not fatal when the store fails.

        Without the record a holder killed before its ack leaves both messages to run,
        as before copies were counted: a duplicate, never a lost job.
        """
        job = delivery.job
        try:
            await self._states.copied(job.id, delivery.copy + 1, job.created_at, delay)
        except Exception as exc:  # whatever the store's failure, the copy is confirmed
            logger.warning(
                "Could not record the new copy of job %s (%s); if this worker dies before "
                "its ack, the job may run twice.",
                job.id,
                exc,
            )
