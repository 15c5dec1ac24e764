"""The deliveries one queue object handed out, and their leases.

A delivery handed out (`DeliveryLeases.hand_out`) is recorded as running in the job-state
store, gets a lease token and a timer on the event loop. The settle paths of the queue
find it again under that token (`held`) and end its lease (`take`); a timer that runs
out first gives the job back to the broker, which delivers it again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

from lexigram.contracts.tasks import Job, JobStatus
from lexigram.tasks.backends.rabbitmq._consumer import DeliveryBuffer
from lexigram.tasks.backends.rabbitmq._delivery import Delivery
from lexigram.tasks.backends.rabbitmq._state import JobStates

# Its records keep the logger of `_queue`, where this code was before, so that logging
# configurations naming that logger still see them.
logger = logging.getLogger("lexigram.tasks.backends.rabbitmq._queue")

_STALL_GRACE = 0.2
"""Seconds a lease timer may fire late before the loop counts as having been blocked."""


class DeliveryLeases:
    """The in-flight map of one queue object (job id to delivery) and the lease timers.

    Args:
        buffer: The queue's consumer buffer (acks, rejects, idling after the last job).
        states: The queue's job-state records.
        queue_name: The queue's name, for log messages.
        lease_seconds: The lease of a delivery (``visibility_timeout``).
        spawn: Runs a coroutine as one of the queue's background tasks (a lease that ran
            out is given back in one, which the queue waits for before counting).
    """

    def __init__(
        self,
        buffer: DeliveryBuffer,
        states: JobStates,
        queue_name: str,
        lease_seconds: float,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._buffer = buffer
        self._states = states
        self._queue_name = queue_name
        self.lease_seconds = lease_seconds
        self._spawn = spawn
        self.inflight: dict[str, Delivery] = {}

    async def hand_out(self, deliveries: list[Delivery]) -> list[Job]:
        """Lease the jobs of `deliveries` to the caller; the rest are acked, dropped or parked.

        A delivery is dropped when it is an older copy of a re-published job (a newer
        copy carries the job on), when a copy of its job no newer than it runs here
        already, or when the state store says it must not run (deleted, or another copy
        in this batch runs). A newer copy of a job running here waits unacked until that
        run ends, then goes back to the queue (`take`).
        """
        dropped = await self.drop_superseded(deliveries)
        if dropped:
            gone = {id(delivery) for delivery in dropped}
            deliveries = [delivery for delivery in deliveries if id(delivery) not in gone]
        fresh: list[Delivery] = []
        for delivery in deliveries:
            current = self.inflight.get(delivery.job.id)
            if current is not None and not current.stale:
                if delivery.copy > current.copy:
                    # Its twin was re-published elsewhere, and that copy's record makes
                    # the running delivery stale: acked now, the job would have no
                    # message left should this process die. It goes back when the run ends.
                    if current.parked is None:
                        current.parked = []
                    current.parked.append(delivery)
                    continue
                # A second copy of a job that is running here (e.g. published twice across
                # a reconnect): the running one settles it, drop this one.
                await self._buffer.ack(delivery)
                continue
            fresh.append(delivery)
        if not fresh:
            return []
        fresh = _newest_first(fresh)
        lease = self.lease_seconds
        # One read and one write of the state store for the whole batch.
        verdicts = await self._states.hand_out(
            [(d.job.id, d.record(), d.job.retry_count > 0) for d in fresh], lease
        )
        jobs: list[Job] = []
        for delivery, runs in zip(fresh, verdicts, strict=True):
            if not runs:  # deleted, or another copy of a job this batch runs
                await self._buffer.ack(delivery)
                continue
            job = delivery.job
            job.status = JobStatus.RUNNING
            delivery.token = job.lease_token = secrets.token_hex(8)
            current = self.inflight.get(job.id)
            if current is not None:
                current.stop_timer()
            self.inflight[job.id] = delivery
            self.arm(delivery, lease)
            jobs.append(job)
        return jobs

    def arm(self, delivery: Delivery, seconds: float) -> None:
        """(Re)start the lease of a delivery handed out here: it ends `seconds` from now."""
        loop = asyncio.get_running_loop()
        delivery.stop_timer()
        delivery.deadline = loop.time() + seconds
        delivery.grace = False
        delivery.timer = loop.call_at(delivery.deadline, self._lease_due, delivery)

    def _lease_due(self, delivery: Delivery) -> None:
        """The lease timer fired: give the job back unless the loop itself was blocked.

        A timer that fires well after its time means this process's event loop was
        blocked, and with it the heartbeats of the job: that is not a holder that went
        away, so it first gets a third of the lease to heartbeat.
        """
        delivery.timer = None
        job_id = delivery.job.id
        if self.inflight.get(job_id) is not delivery or delivery.settled:
            return
        loop = asyncio.get_running_loop()
        late = loop.time() - delivery.deadline
        if late > max(_STALL_GRACE, self.lease_seconds / 4) and not delivery.grace:
            delivery.grace = True
            delivery.timer = loop.call_later(self.lease_seconds / 3, self._lease_due, delivery)
            return
        self.take(job_id)
        self._spawn(self._give_back(delivery))

    async def _give_back(self, delivery: Delivery) -> None:
        """Return a delivery whose lease ran out to the broker (it is delivered again)."""
        job = delivery.job
        logger.warning(
            "Lease of job %s (%s) on %r ran out after %g s without a heartbeat; it goes "
            "back to the queue.",
            job.id,
            job.name,
            self._queue_name,
            self.lease_seconds,
        )
        await self._states.lapsed(job.id)
        await self._buffer.reject(delivery, requeue=True)

    def held(self, task_id: str, token: str | None) -> Delivery | None:
        """The delivery of `task_id` held here under `token` (any token when None)."""
        delivery = self.inflight.get(task_id)
        if delivery is None or (token is not None and delivery.token != token):
            return None
        if delivery.stale:
            # Its channel is gone, so the broker requeued it: nobody holds it here.
            delivery.stop_timer()
            self.take(task_id)
            return None
        return delivery

    def take(self, job_id: str) -> Delivery | None:
        """Remove a job from the in-flight map (the consumer may go idle after the last).

        Newer copies of the job parked behind it (`hand_out`) go back to the queue.
        """
        delivery = self.inflight.pop(job_id, None)
        if delivery is not None:
            delivery.stop_timer()
            if delivery.parked:
                parked, delivery.parked = delivery.parked, None
                for twin in parked:
                    self._spawn(self._give_back_twin(twin))
            if not self.inflight:
                self._buffer.settled()
        return delivery

    async def _give_back_twin(self, delivery: Delivery) -> None:
        await self._buffer.reject(delivery, requeue=True)

    async def drop_superseded(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Ack and drop the deliveries of which a newer copy was confirmed; return them.

        Only a redelivered message (its holder died before its ack) or a copy (its twin,
        from a holder that died before its record, may have been re-published since) can
        be such an older copy, so only they are looked up: a job delivered for the first
        time as it was enqueued costs no read. A store that cannot answer drops none.
        """
        looked = [d for d in deliveries if _may_be_superseded(d)]
        if not looked:
            return []
        try:
            verdicts = await self._states.superseded([(d.job, d.copy) for d in looked])
        except Exception as exc:  # whatever the store's failure, running them loses nothing
            logger.debug("Could not look up newer copies (%s); none is dropped.", exc)
            return []
        dropped = [d for d, stale in zip(looked, verdicts, strict=True) if stale]
        for delivery in dropped:
            logger.info(
                "Dropped an older copy of job %s (%s) on %r: a newer copy of it was "
                "published before its holder stopped.",
                delivery.job.id,
                delivery.job.name,
                delivery.job.queue_name,
            )
            await self._buffer.ack(delivery)
        return dropped


def _may_be_superseded(delivery: Delivery) -> bool:
    return delivery.redelivered or delivery.copy > 0


def _newest_first(deliveries: list[Delivery]) -> list[Delivery]:
    """`deliveries` with the newest copy of each job before its older ones.

    Of two messages of one job in a batch the first runs (`JobStates.hand_out`) and the
    other is acked: it must be the older, which the newer one carries on.
    """
    newest: dict[str, Delivery] = {}
    for delivery in deliveries:
        kept = newest.get(delivery.job.id)
        if kept is None or delivery.copy > kept.copy:
            newest[delivery.job.id] = delivery
    if len(newest) == len(deliveries):
        return deliveries
    chosen = {id(delivery) for delivery in newest.values()}
    return [*newest.values(), *(d for d in deliveries if id(d) not in chosen)]
