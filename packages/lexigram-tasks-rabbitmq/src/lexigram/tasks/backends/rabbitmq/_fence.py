"""Fencing the second copy a re-publication leaves when its process dies half-way.

A delivered job that waits again (a retry, a requeue, a delay-bucket hop, a classic
redelivery re-published with its count raised, a job an idle consumer hands back) is
published anew and its delivery acked after the confirm. AMQP cannot make those two
steps one: a process that dies between the broker taking the copy and the broker
reading the ack (the confirm's own round trip, the ack's flush) leaves both messages,
the original is redelivered at once, and each would run its own lineage of attempts.

So each re-published message carries a copy id (`COPY_HEADER`; a job as enqueued has
none, written ``""`` here) and, before publishing, the hop is recorded in the job-state
store as ``hop:<id>`` = ``?<lineage>|<from>|<to>``: the message `<from>` is being
replaced by `<to>`. Of those two, the first one handed out takes the hop by creating
``pick:<id>:<to>`` (set-if-absent), and the other is acked and dropped; any other copy
of the job's lineage is older than `<from>` and is dropped on sight. A job finished
from a re-published message leaves ``hop:<id>`` = ``#<lineage>`` so a stale copy that
comes later does not run it again. `<lineage>` is the job's ``created_at``: a job
enqueued again under the same id is a new lineage the old records do not concern.

Only deliveries that can be stale are looked at: re-published ones and redelivered
ones (a stale original is always a redelivery: its holder died). A job delivered for
the first time as it was enqueued, the common case, costs nothing here. The records
fence across processes with a shared state store; the in-process default fences
within its process only.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.rabbitmq._delivery import COPY_HEADER, Delivery
from lexigram.tasks.backends.rabbitmq._state import JobStates

logger = logging.getLogger("lexigram.tasks.backends.rabbitmq._queue")

__all__ = ["COPY_HEADER", "HopFence", "lineage", "new_copy_id"]

_HOPPING = "?"
_FINISHED = "#"


def new_copy_id() -> str:
    """A fresh copy id for a message about to be re-published."""
    return secrets.token_hex(8)


def lineage(job: Job) -> str:
    """What tells a job's messages from those of a later job with the same id."""
    return repr(job.created_at)


class HopFence:
    """The ``hop:``/``pick:`` records of one queue (see the module docstring).

    Args:
        states: The queue's job-state records (their store and key space).
    """

    def __init__(self, states: JobStates) -> None:
        self._states = states

    @staticmethod
    def concerns(delivery: Delivery) -> bool:
        """True if `delivery` may be a stale copy (so `admit` must look it up)."""
        return delivery.envelope is not None and (delivery.redelivered or bool(delivery.copy))

    async def admit(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Whether each delivery may run or be sent on; False for a stale copy.

        One read for the batch; a delivery named by a hop in progress adds the
        set-if-absent that takes the hop.
        """
        verdicts = [True] * len(deliveries)
        looked = [i for i, delivery in enumerate(deliveries) if self.concerns(delivery)]
        if not looked:
            return verdicts
        states = self._states
        keys = [states.key("hop", deliveries[i].job.id) for i in looked]
        records = await states.batch.get_many(keys)
        for i, record in zip(looked, records, strict=True):
            # One by one: two copies of a job in one batch must not both take the hop.
            verdicts[i] = await self._decide(deliveries[i], record)
        return verdicts

    async def _decide(self, delivery: Delivery, record: str | None) -> bool:
        if record is None:
            return True  # never re-published (or its records expired): nothing to fence
        job = delivery.job
        kind, body = record[:1], record[1:]
        if kind == _FINISHED:
            runs = body != lineage(job)
        elif kind == _HOPPING:
            own, _, ends = body.partition("|")
            origin, _, target = ends.partition("|")
            if own != lineage(job):
                runs = True
            elif delivery.copy not in (origin, target):
                runs = False  # replaced before the hop on record
            else:
                runs = await self._take(job, delivery.copy, target)
        else:
            runs = True  # a record this version does not know: run, as before fencing
        if not runs:
            logger.info(
                "Dropped a stale copy of job %s (%s): another copy of it was published "
                "in its place.",
                job.id,
                job.name,
            )
        return runs

    async def _take(self, job: Job, copy: str, target: str) -> bool:
        states = self._states
        key = states.key("pick", f"{job.id}:{target}")
        store = states.store
        if await store.set_if_absent(key, copy, states.ttl(_remaining(job))):
            return True
        holder = await store.get(key)
        return holder is None or holder == copy

    async def hopping(self, job: Job, delivery: Delivery, target: str, delay: float) -> None:
        """Record that `delivery` is being replaced by the copy `target` (before publishing).

        The pick of the hop `delivery` itself came with is no longer consulted once
        this record replaces it, so it goes in the same write.
        """
        states = self._states
        value = f"{_HOPPING}{lineage(job)}|{delivery.copy}|{target}"
        sets = [(states.key("hop", job.id), value, states.ttl(delay))]
        deletes = [states.key("pick", f"{job.id}:{delivery.copy}")] if delivery.copy else []
        await states.batch.write_many(sets, deletes)

    async def finished(self, delivery: Delivery) -> None:
        """The job of a re-published delivery ended: later stale copies do not run."""
        if not delivery.copy or delivery.envelope is None:
            return
        states = self._states
        job = delivery.job
        sets = [(states.key("hop", job.id), _FINISHED + lineage(job), states.ttl())]
        await states.batch.write_many(sets, [states.key("pick", f"{job.id}:{delivery.copy}")])


def _remaining(job: Job) -> float:
    return max(0.0, (job.scheduled_at or 0.0) - time.time())
