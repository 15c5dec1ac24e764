"""Taking jobs off a Redis queue: the dequeue script's arguments, and its reply read as jobs.

One call of the dequeue script promotes due delayed jobs, reclaims expired leases and
leases up to N jobs; `JobLeaser` builds its arguments and turns its reply (the next due
time, then id, payload, delivery count and lease token per job) into `Job`s. The wait of
an idle consumer between calls is `_waiting`'s; the loop around both is the queue's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from lexigram.contracts.tasks import (
    BackendConnectionError,
    Job,
    JobStatus,
    decode_or_poison,
    make_renamed_poison_job,
    printable_job_id,
)
from lexigram.tasks.backends.redis import _scripts as lua

logger = logging.getLogger(__name__)

# A taken job as the dequeue script returns it: id, payload, delivery count, lease token.
_Taken = tuple[bytes, bytes, int, bytes]

_SCAN_LIMIT = 1000  # delayed promotions / lease reclaims per dequeue call
_OUTAGE_BUDGET = 1.0  # seconds a consumer waits on a dead server per call


class JobLeaser:
    """Leases the jobs of one queue object.

    Args:
        run: Runs a script on the queue's keys, with the queue's retries (its ``_run``).
        queue_name: The queue's name, for the poison stand-in jobs.
        lease_ms: The lease of a job taken, in milliseconds.
    """

    def __init__(self, run: Callable[..., Awaitable[Any]], queue_name: str, lease_ms: int) -> None:
        self._run = run
        self._queue_name = queue_name
        self._lease_ms = lease_ms

    def _decode(self, job_id: str, payload: bytes, deliveries: int, token: bytes) -> Job:
        # Never raises for a bad payload, so it cannot fail the rest of the batch; the
        # worker logs the poison job once, when it dead-letters it.
        job = decode_or_poison(job_id, payload, queue_name=self._queue_name)
        job.id = job_id
        job.delivery_count = deliveries
        job.status = JobStatus.RUNNING
        job.lease_token = token.decode()
        return job

    def args(self, max_jobs: int) -> tuple[int, int, int]:
        """The dequeue script's ARGV for a take of up to `max_jobs` jobs."""
        return (max_jobs, self._lease_ms, _SCAN_LIMIT)

    async def read(self, raw: Any) -> tuple[int, list[Job]]:
        """The dequeue script's reply as ``(next_due_ms, jobs)``, each job RUNNING.

        A job whose id is not UTF-8 text is renamed first (`_rename_unnamed`): it cannot
        fail the batch it came in.
        """
        decode = self._decode
        try:
            jobs = [
                decode(raw[i].decode(), raw[i + 1], int(raw[i + 2]), raw[i + 3])
                for i in range(1, len(raw), 4)
            ]
        except UnicodeDecodeError:  # rare: read the batch again, one job at a time
            jobs = []
            unnamed: list[_Taken] = []
            for i in range(1, len(raw), 4):
                try:
                    job_id = raw[i].decode()
                except UnicodeDecodeError:
                    unnamed.append((raw[i], raw[i + 1], int(raw[i + 2]), raw[i + 3]))
                    continue
                jobs.append(decode(job_id, raw[i + 1], int(raw[i + 2]), raw[i + 3]))
            jobs += await self._rename_unnamed(unnamed)
        return int(raw[0]), jobs

    async def _rename_unnamed(self, taken: list[_Taken]) -> list[Job]:
        """Hand out jobs whose id is not UTF-8 text as poison, under a printable id.

        No client can send such an id back, so the job could be neither run nor settled
        under it (see `lexigram.contracts.tasks.printable_job_id`). Each job is renamed in
        Redis (`RENAME`) to its printable id, or to the unique form if a job holds that
        one; the worker then dead-letters it under the new id like any undecodable job.
        """
        jobs: list[Job] = []
        pending = taken
        for attempt in range(2):
            names = [printable_job_id(raw_id, taken=attempt > 0) for raw_id, *_ in pending]
            pairs = zip(pending, names, strict=True)
            args = [part for (raw_id, *_), name in pairs for part in (raw_id, name)]
            renamed = await self._run(lua.RENAME, args)
            left: list[_Taken] = []
            for done, name, entry in zip(renamed, names, pending, strict=True):
                if done:
                    jobs.append(self._unnamed_poison(name, entry))
                else:
                    left.append(entry)
            pending = left
            if not pending:
                break
        for raw_id, *_ in pending:  # settled or deleted meanwhile, or both names taken
            logger.warning(
                "Job id %r on Redis queue %r is not UTF-8 text and could not be renamed; it "
                "is left where it is.",
                raw_id,
                self._queue_name,
            )
        return jobs

    def _unnamed_poison(self, job_id: str, taken: _Taken) -> Job:
        raw_id, payload, deliveries, token = taken
        job = make_renamed_poison_job(job_id, raw_id, payload, queue_name=self._queue_name)
        job.delivery_count = deliveries
        job.status = JobStatus.RUNNING
        job.lease_token = token.decode()
        return job

    async def lease(
        self, max_jobs: int, retry_timeout: float | None, *, fail_fast: bool = True
    ) -> tuple[int, list[Job]]:
        """Run the dequeue script once: lease up to `max_jobs` jobs, waiting for none."""
        raw = await self._run(
            lua.DEQUEUE,
            self.args(max_jobs),
            retry_timeout=retry_timeout,
            fail_fast=fail_fast,
        )
        return await self.read(raw)

    async def lease_unless_down(self, max_jobs: int) -> tuple[int, list[Job]] | None:
        """Lease without waiting; None while Redis is unreachable (after ~1 s of retries)."""
        try:
            return await self.lease(max_jobs, _OUTAGE_BUDGET, fail_fast=False)
        except BackendConnectionError as exc:
            if not _is_outage(exc):
                raise
            return None


def _is_outage(exc: BackendConnectionError) -> bool:
    """True for an unreachable server (worth waiting out), False for refused credentials."""
    return exc.details.get("transient", True) is not False
