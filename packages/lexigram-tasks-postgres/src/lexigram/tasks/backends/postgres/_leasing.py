"""Taking jobs off a PostgreSQL queue: the dequeue statement, and rows read as jobs.

One UPDATE over a ``SELECT ... FOR UPDATE SKIP LOCKED LIMIT n`` leases up to n jobs (and
picks up expired leases); `JobLeaser` runs it and turns its rows into `Job`s, each with
its lease token. Waiting between takes is `_wakeups`'s; the loop around both is the queue's.
`held_job` reads the row `get_job` finds.
"""

from __future__ import annotations

import operator

import asyncpg

from lexigram.contracts.tasks import Job, JobStatus, decode_or_poison
from lexigram.tasks.backends.postgres._connection import Database
from lexigram.tasks.backends.postgres._enqueue import make_token
from lexigram.tasks.backends.postgres._options import PostgresTaskConfig
from lexigram.tasks.backends.postgres._sql import QueueSQL
from lexigram.tasks.backends.postgres._wakeups import Wakeups

# Sort key of dequeued rows: (-priority, due, seq), the dequeue statement's last columns.
_DELIVERY_ORDER = operator.itemgetter(3, 4, 5)


class JobLeaser:
    """Leases the jobs of one queue object.

    Args:
        db: The queue's database.
        sql: The queue's statements.
        config: The queue's configuration (name, lease length).
        wakeups: The queue's wake-ups (a take that finds nothing is recorded there).
    """

    def __init__(
        self, db: Database, sql: QueueSQL, config: PostgresTaskConfig, wakeups: Wakeups
    ) -> None:
        self._db = db
        self._sql = sql
        self.config = config
        self._wakeups = wakeups

    async def take(self, max_jobs: int, generation: int | None = None) -> list[Job]:
        """Lease up to `max_jobs` jobs in one statement, in delivery order.

        A take that finds nothing records `generation` (the wake-up generation it began
        in) as the last empty one.
        """
        rows = await self._db.run(
            lambda conn: conn.fetch(
                self._sql.dequeue, self.config.queue_name, max_jobs, self.config.visibility_timeout
            ),
            "dequeue jobs",
        )
        if not rows:
            if generation is not None:
                self._wakeups.empty_generation = generation
            return []
        # UPDATE ... RETURNING follows no order: restore the delivery order (columns 3-5).
        rows = sorted(rows, key=_DELIVERY_ORDER)
        return [self._leased(row[0], row[1], row[2], row[5]) for row in rows]

    def _leased(self, job_id: str, payload: bytes, delivery_count: int, seq: int) -> Job:
        # Never raises for a bad payload, so it cannot fail the rest of the batch; the
        # worker logs the poison job once, when it dead-letters it.
        job = decode_or_poison(job_id, payload, queue_name=self.config.queue_name)
        job.id = job_id
        job.status = JobStatus.RUNNING
        job.delivery_count = delivery_count
        if job.queue_name is None:
            job.queue_name = self.config.queue_name
        job.lease_token = make_token(seq, delivery_count)
        return job


def held_job(job_id: str, row: asyncpg.Record, queue_name: str) -> Job:
    """The job of a row `queue_name` holds: RUNNING while leased, else RETRYING or PENDING."""
    job = decode_or_poison(job_id, row["payload"], queue_name=queue_name)
    job.delivery_count = row["delivery_count"]
    if row["leased"]:
        job.status = JobStatus.RUNNING
    elif job.status not in (JobStatus.PENDING, JobStatus.RETRYING):
        job.status = JobStatus.RETRYING if job.retry_count > 0 else JobStatus.PENDING
    return job
