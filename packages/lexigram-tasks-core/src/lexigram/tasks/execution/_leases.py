"""`LeaseWatch`: what a worker does about its jobs' leases besides renewing them on its loop.

It starts and stops the worker's `LeaseKeeper` (the thread that renews the leases when the
queue offers a renewer, and watches the loop for blocks), tells the `Heartbeat` whether
that thread keeps the leases now, and acts on the leases that are gone: a job whose lease
the backend refused has its handler stopped, as lost unless a cancellation announced
meanwhile explains it; a job whose task was cancelled from outside before it started is
given back to the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from lexigram.contracts.tasks import Job, TaskQueueProtocol
from lexigram.tasks.execution._lag import LoopLagMonitor
from lexigram.tasks.execution._lease_keeper import LeaseKeeper, start_keeper
from lexigram.tasks.execution._running import LEASE_LOST, Running

# A cancelled job's lease is gone before its announcement arrives (the backend deletes the
# job, then tells the subscribers); a lost lease waits this long for the announcement, so
# the job is settled as cancelled rather than as lost.
CANCEL_NOTICE_WAIT = 0.25


class LeaseWatch:
    """The lease keeper of one worker, and what the worker does when a lease is gone.

    Args:
        queue: The worker's queue.
        in_flight: The worker's table of leased jobs (job id -> `Running`).
        interrupt: Stops a job's handler for a reason (the worker's `_interrupt`).
        forget: Takes a job out of the worker's table and frees its slot.
        give_back: Returns a job that never started to the queue.
        announces_cancels: Whether the worker hears of cancellations (a lost lease then
            waits `CANCEL_NOTICE_WAIT` for one before it is settled as lost).
        logger: Where to log.
        worker_id: Id of the worker, in log lines.
    """

    def __init__(
        self,
        queue: TaskQueueProtocol,
        in_flight: dict[str, Running],
        *,
        interrupt: Callable[[Running, str], None],
        forget: Callable[[Running], None],
        give_back: Callable[[Job], Awaitable[None]],
        announces_cancels: bool,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        worker_id: str,
    ) -> None:
        self._queue = queue
        self._in_flight = in_flight
        self._interrupt = interrupt
        self._forget = forget
        self._give_back = give_back
        self._announces_cancels = announces_cancels
        self._logger = logger
        self._worker_id = worker_id
        self.keeper: LeaseKeeper | None = None

    def start(self, loop: asyncio.AbstractEventLoop, lag_monitor: LoopLagMonitor | None) -> None:
        """Renew leases from a thread when the queue can (and watch the loop for blocks)."""
        self.keeper = start_keeper(
            self._queue,
            self._in_flight,
            lost=self.leases_lost,
            loop=loop,
            logger=self._logger,
            worker_id=self._worker_id,
            lag_monitor=lag_monitor,
        )

    async def stop(self) -> None:
        """Stop the keeper's thread (the leases it kept are left to expire)."""
        keeper, self.keeper = self.keeper, None
        if keeper is not None:
            await keeper.stop()

    def kept_by_keeper(self) -> bool:
        """Whether the keeper's thread renews the leases that carry a token now.

        Not while its renewals fail: the heartbeat on the loop then renews them too.
        """
        keeper = self.keeper
        return (
            keeper is not None and keeper.renewer is not None and keeper.running and keeper.renewing
        )

    def blocking_job(self) -> tuple[str, str] | None:
        """The job the keeper saw blocking the loop, if any (for the lag monitor)."""
        keeper = self.keeper
        return None if keeper is None else keeper.take_blocker()

    def leases_lost(self, leases: list[tuple[str, str]]) -> None:
        """The keeper's report (on the loop): stop the handlers of these deliveries."""
        for job_id, token in leases:
            entry = self._in_flight.get(job_id)
            if entry is not None and entry.job.lease_token == token:
                self.lease_gone(entry)

    def lease_gone(self, entry: Running) -> None:
        """Stop a handler whose lease is gone, as lost unless a cancellation explains it."""
        if not self._announces_cancels:
            self._interrupt(entry, LEASE_LOST)
            return

        def lost() -> None:
            if self._in_flight.get(entry.job.id) is entry:
                self._interrupt(entry, LEASE_LOST)

        asyncio.get_running_loop().call_later(CANCEL_NOTICE_WAIT, lost)

    async def reclaim(self, entry: Running) -> None:
        """Release a job whose task was cancelled from outside before it could start."""
        if self._in_flight.get(entry.job.id) is not entry:
            return
        self._forget(entry)
        self._logger.warning(
            "Job %s (%s) was cancelled from outside before it started; requeueing it.",
            entry.job.id,
            entry.job.name,
        )
        await self._give_back(entry.job)
