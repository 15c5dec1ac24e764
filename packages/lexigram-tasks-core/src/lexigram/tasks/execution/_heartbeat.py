"""`Heartbeat`: renews the leases of a worker's running jobs from its event loop.

Every third of the lease it extends the lease of each running job that a `LeaseKeeper`
thread does not renew (all of them when the queue offers no renewer, else those without
a lease token), and hands back to the worker every job whose task ended without running
(cancelled from outside before it started). A lease the backend refuses is reported to
the worker, which stops that job's handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from lexigram.contracts.tasks import TaskQueueProtocol
from lexigram.tasks._outage import CONNECTION_ERRORS, OutageLog
from lexigram.tasks.execution._running import Running


class Heartbeat:
    """Renews leases on the worker's loop; one per `TaskWorker`.

    Args:
        queue: The queue the jobs were leased from (``extend_lease``).
        in_flight: The worker's table of running jobs (job id -> `Running`), read only.
        lease_seconds: The queue's lease length; a beat comes every third of it.
        kept_by_keeper: Whether a lease keeper thread renews the leases that carry a
            token right now (asked at every beat).
        lease_gone: Called with a job whose lease the backend refused.
        reclaim: Awaited with a job whose task ended before it started.
        logger: Where to log.
        worker_id: Id of the worker, in log lines.
    """

    __slots__ = (
        "_in_flight",
        "_kept_by_keeper",
        "_lease_gone",
        "_outage",
        "_reclaim",
        "interval",
        "logger",
        "queue",
        "worker_id",
    )

    def __init__(
        self,
        queue: TaskQueueProtocol,
        in_flight: dict[str, Running],
        lease_seconds: float,
        *,
        kept_by_keeper: Callable[[], bool],
        lease_gone: Callable[[Running], None],
        reclaim: Callable[[Running], Awaitable[None]],
        logger: logging.Logger | logging.LoggerAdapter[Any],
        worker_id: str,
    ) -> None:
        self.queue = queue
        self._in_flight = in_flight
        self.interval = lease_seconds / 3.0
        self._kept_by_keeper = kept_by_keeper
        self._lease_gone = lease_gone
        self._reclaim = reclaim
        self.logger = logger
        self.worker_id = worker_id
        self._outage = OutageLog(
            logger, f"Worker {worker_id}", "extend the leases of its running jobs"
        )

    async def run(self) -> None:
        """Extend the lease of every running job every lease/3 seconds, until cancelled.

        With a lease keeper, only jobs without a lease token are renewed here (it renews
        the rest), and the loop still reclaims jobs cancelled from outside.
        """
        interval = self.interval
        outage = self._outage
        while True:
            await asyncio.sleep(interval)
            try:
                lost = await self.renew(interval)
            except Exception as exc:
                lost = exc
            if lost is not None:
                outage.failed(lost, interval)
            elif outage.in_outage:
                outage.succeeded()

    async def renew(self, interval: float) -> BaseException | None:
        """One beat: reclaim the jobs whose task ended, extend the leases that are due.

        Returns:
            The failure of a lease extension that could not reach the backend (one for
            the beat however many jobs it concerned), or None.
        """
        loop = asyncio.get_running_loop()
        kept = self._kept_by_keeper()
        due: list[Running] = []
        for entry in list(self._in_flight.values()):
            if entry.task is not None and entry.task.done():
                await self._reclaim(entry)
                continue
            if kept and entry.job.lease_token is not None:
                continue  # the lease keeper's thread renews it
            # A lease taken less than half an interval ago still has over 2/3 left.
            if not entry.settling and loop.time() - entry.renewed >= interval / 2:
                due.append(entry)
        if not due:
            return None
        # Concurrently: a backend that pipelines (Redis) renews them all in one round trip
        # instead of one per job in flight.
        failures = await asyncio.gather(*(self._renew(entry) for entry in due))
        return next((failure for failure in failures if failure is not None), None)

    async def _renew(self, entry: Running) -> BaseException | None:
        """Extend one job's lease; its failure if the backend could not be reached."""
        now = asyncio.get_running_loop().time()
        job = entry.job
        try:
            if job.lease_token is None:
                kept = await self.queue.extend_lease(job.id)
            else:
                kept = await self.queue.extend_lease(job.id, lease_token=job.lease_token)
        except CONNECTION_ERRORS as exc:
            return exc  # the beat reports the outage once, not once per job
        except Exception:
            self.logger.exception("Extending the lease of job %s failed.", entry.job.id)
            return None
        if kept is False:  # only an explicit False means the lease is gone
            self._lease_gone(entry)
        else:
            entry.renewed = now
        return None
