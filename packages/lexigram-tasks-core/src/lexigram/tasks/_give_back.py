"""Giving a leased job back to the queue unrun, counted so that it is never a crash.

A worker gives a job back without running it when the job's task is over its rate limit
(it comes back when its turn is due) and when the job never started before the worker
stopped or dropped it: held ahead of a free slot, waiting in a rate limit's line, leased
while the worker was stopping, or cancelled from outside before it started. Every such job
goes through `give_back`: `retry_later` keeps its retry count, and its metadata counts the
give-back. The next delivery raises the job's delivery count all the same, and the
crash-loop check (deliveries not explained by retries, at most ``max_deliveries``)
subtracts `times_given_back`, so a job that only waited is never dead-lettered as a crash,
however many workers gave it back.

A run that a stop interrupted is not given back this way: it started, so its delivery
counts (`nack` with requeue).
"""

from __future__ import annotations

from lexigram.contracts.tasks import Job, TaskQueueProtocol

GIVEN_BACK_KEY = "lexigram.given_back"
"""`Job.metadata` key counting the times a worker gave the job back unrun."""

# Workers of 0.2 counted only the rate limit's give-backs, under this key; a job they gave
# back may still be waiting when a newer worker leases it.
_RATE_DEFERRALS_KEY = "lexigram.rate_deferrals"


def _count(job: Job, key: str) -> int:
    """The count stored under `key` in the job's metadata (0 if absent or not a count)."""
    count = job.metadata.get(key, 0)
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def times_given_back(job: Job) -> int:
    """How often workers gave `job` back to the queue without running it."""
    return _count(job, GIVEN_BACK_KEY) + _count(job, _RATE_DEFERRALS_KEY)


async def give_back(queue: TaskQueueProtocol, job: Job, *, delay: float = 0.0) -> bool:
    """Return the leased, unrun `job` to `queue`, to be delivered again after `delay` s.

    Args:
        queue: The queue the job was leased from (its lease token is on the job).
        job: The job; its metadata gains one give-back.
        delay: Seconds before it may be delivered again.

    Returns:
        What `retry_later` returns: False when the job's lease was lost meanwhile (its
        lease runs out, or it was deleted, and nothing is to be done).
    """
    job.metadata[GIVEN_BACK_KEY] = _count(job, GIVEN_BACK_KEY) + 1
    return await queue.retry_later(job, delay=delay)
