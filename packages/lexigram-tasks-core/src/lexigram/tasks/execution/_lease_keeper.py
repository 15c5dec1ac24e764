"""`LeaseKeeper`: renews a worker's leases from a thread, so a blocked loop cannot lose them.

The heartbeat on the worker's event loop stops whenever a handler blocks the loop
(``time.sleep`` or CPU work in an ``async def``), and a block longer than the lease let
the job (and every sibling job of the process) be delivered again while it still ran.
The keeper runs on a daemon thread with an event loop of its own (one thread per process,
shared by its workers) and renews, through a `LeaseRenewerProtocol` that holds its own
connection, the lease of every job in the worker's in-flight table, in one batch every
third of the lease.

It reads that table by copying it (one C-level ``dict.copy``, atomic under the GIL), so
the worker's per-job cost stays the dict insert and delete it already makes. Leases the
backend refuses are reported to the worker's loop with ``call_soon_threadsafe``, which
stops their handlers (a cancellation it missed, a job deleted meanwhile).

The same thread watches the worker's loop: when the loop-lag monitor has not ticked for
longer than its threshold, it names the job whose task is running on the loop, while
the loop is still blocked.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks import (
    LeaseRenewerProtocol,
    LeaseRenewingQueueProtocol,
    TaskQueueProtocol,
)

if TYPE_CHECKING:
    from lexigram.tasks.execution._lag import LoopLagMonitor
    from lexigram.tasks.execution._running import Running

# Most leases in one `renew` call; a worker rarely holds more.
_BATCH = 500
# Seconds `stop` waits for the thread to close its connection.
_STOP_WAIT = 5.0


class LeaseKeeper:
    """Renews the leases of a worker's running jobs from a thread of its own.

    Args:
        renewer: The backend's renewer (its own connection; runs on the keeper's loop);
            None when the queue has none: the keeper then only watches the loop.
        in_flight: The worker's table of running jobs (job id -> `Running`), read only.
        lease_seconds: The queue's lease length; renewals come every third of it.
        lost: Called on the worker's loop with the ``(job id, lease token)`` pairs the
            backend refused.
        worker_loop: The worker's event loop (reports go there; a closed loop stops
            the keeper).
        logger: Where to log.
        worker_id: The worker, named in logs and in the thread's name.
        lag_monitor: The worker's loop-lag monitor, whose ticks show the loop is alive
            (None: no blocked-loop watch).
    """

    def __init__(
        self,
        renewer: LeaseRenewerProtocol | None,
        in_flight: dict[str, Running],
        *,
        lease_seconds: float,
        lost: Callable[[list[tuple[str, str]]], None],
        worker_loop: asyncio.AbstractEventLoop,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        worker_id: str,
        lag_monitor: LoopLagMonitor | None = None,
    ) -> None:
        self.renewer = renewer
        self.interval = lease_seconds / 3.0
        self.renewals = 0
        # False after a renewal that failed (the renewer's own connection refused, say),
        # until one succeeds: meanwhile the worker's heartbeat renews these leases too,
        # through the queue, so they do not run out while the backend is reachable.
        self.renewing = True
        self._blocker: tuple[str, str] | None = None
        self._in_flight = in_flight
        self._lease = lease_seconds
        self._lost = lost
        self._worker_loop = worker_loop
        self._logger = logger
        self._worker_id = worker_id
        self._monitor = lag_monitor
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._future: concurrent.futures.Future[None] | None = None
        self._warned_stall = False

    def start(self) -> None:
        """Start renewing on the process's keeper thread (until `stop`)."""
        self._loop = _keeper_loop()
        self._future = asyncio.run_coroutine_threadsafe(self._main(), self._loop)

    async def stop(self) -> None:
        """Stop renewing and close the renewer's connection (waits up to 5 s for it)."""
        self._stopping = True
        loop, future = self._loop, self._future
        if loop is None or future is None:
            return
        with contextlib.suppress(RuntimeError):  # the keeper's loop is gone (a fork)
            loop.call_soon_threadsafe(self._wake_up)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), _STOP_WAIT)
        self._future = None

    @property
    def running(self) -> bool:
        """True while the keeper renews (or watches)."""
        return self._future is not None and not self._future.done()

    def take_blocker(self) -> tuple[str, str] | None:
        """(job id, task name) of the job last seen blocking the loop, once."""
        blocker, self._blocker = self._blocker, None
        return blocker

    # -- on the keeper's thread ------------------------------------------------------

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        if self._stopping:
            return await self._close_renewer()
        loop = asyncio.get_running_loop()
        monitor = self._monitor
        # The watch needs a finer tick than the renewals when the threshold is short.
        tick = self.interval if monitor is None else min(self.interval, monitor.threshold / 2)
        next_renewal = loop.time() + self.interval
        try:
            while not self._finished():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, tick))
                if self._finished():
                    break
                if monitor is not None:
                    self._watch(monitor)
                if self.renewer is not None and loop.time() >= next_renewal:
                    next_renewal = loop.time() + self.interval
                    await self._renew_all()
        except Exception:
            self._logger.exception("The lease keeper of worker %s stopped.", self._worker_id)
        finally:
            await self._close_renewer()
        return None

    def _finished(self) -> bool:
        # A worker loop that ended without stop() (asyncio.run returned) ends the keeper.
        return self._stopping or self._worker_loop.is_closed()

    async def _close_renewer(self) -> None:
        if self.renewer is not None:
            try:
                await self.renewer.close()
            except Exception:
                self._logger.exception("Closing the lease renewer of %s failed.", self._worker_id)

    async def _renew_all(self) -> None:
        renewer = self.renewer
        assert renewer is not None  # noqa: S101 - checked by the caller
        # One C-level copy: the worker's loop may change the table meanwhile.
        entries = list(self._in_flight.copy().values())
        if not entries:
            return
        now = self._worker_loop.time()
        leases: list[tuple[str, str]] = []
        for entry in entries:
            token = entry.job.lease_token
            # A job past its timeout by a whole lease is hung, not slow: its loop never
            # got to cancel it, so its lease is let go and another worker runs it.
            if token is None or entry.settling or entry.deadline + self._lease < now:
                continue
            leases.append((entry.job.id, token))
        for start in range(0, len(leases), _BATCH):
            batch = leases[start : start + _BATCH]
            try:
                lost = await renewer.renew(batch, self._lease)
            except Exception as exc:
                if self.renewing:
                    self._logger.warning(
                        "The lease keeper of worker %s could not renew %d lease(s): %s. It "
                        "tries again every %.1f s; meanwhile the worker's event loop renews "
                        "them through the queue.",
                        self._worker_id,
                        len(batch),
                        exc,
                        self.interval,
                    )
                self.renewing = False
                continue
            if not self.renewing:
                self._logger.info(
                    "The lease keeper of worker %s renews leases again.", self._worker_id
                )
            self.renewing = True
            self.renewals += 1
            if lost:
                self._report_lost(batch, lost)

    def _report_lost(self, batch: Sequence[tuple[str, str]], lost: Sequence[str]) -> None:
        gone = set(lost)
        pairs = [(job_id, token) for job_id, token in batch if job_id in gone]
        with contextlib.suppress(RuntimeError):  # the worker's loop closed meanwhile
            self._worker_loop.call_soon_threadsafe(self._lost, pairs)

    def _watch(self, monitor: LoopLagMonitor) -> None:
        """Warn once per block, while it lasts, naming the job that blocks the loop."""
        stalled = time.monotonic() - monitor.last_tick
        if stalled < max(monitor.threshold, monitor.tick * 3):
            self._warned_stall = False
            return
        if self._warned_stall:
            return
        self._warned_stall = True
        blocker = self._blocking_job()
        self._blocker = blocker
        if blocker is None:
            return  # not one of this worker's jobs: the monitor reports it afterwards
        job_id, name = blocker
        self._logger.warning(
            "The event loop of worker %s has been blocked for %.1f s by job %s (task %r), "
            "which is still running; every other job of this process waits meanwhile%s. An "
            "async task must not call blocking code: declare it with a plain `def` (it then "
            "runs in a thread) or wrap the blocking call in `await asyncio.to_thread(...)`.",
            self._worker_id,
            stalled,
            job_id,
            name,
            "" if self.renewer is None else " (their leases are kept from another thread)",
            extra={"job_id": job_id, "task": name},
        )

    def _blocking_job(self) -> tuple[str, str] | None:
        """(job id, task name) of the job whose task runs on the worker's loop now."""
        try:
            task = asyncio.current_task(self._worker_loop)
        except RuntimeError:
            return None
        if task is None:
            return None
        for entry in list(self._in_flight.copy().values()):
            if entry.task is task:
                return entry.job.id, entry.job.name
        return None


_thread_lock = threading.Lock()
_thread_loop: tuple[int, asyncio.AbstractEventLoop] | None = None


def _keeper_loop() -> asyncio.AbstractEventLoop:
    """The event loop of the process's keeper thread, started on first use.

    One daemon thread serves every worker of the process: it dies with the process, so a
    dead worker loses its leases, which is what leases are for. A forked child starts its
    own (threads do not survive a fork).
    """
    global _thread_loop  # noqa: PLW0603 - one keeper thread per process
    with _thread_lock:
        if _thread_loop is not None and _thread_loop[0] == os.getpid():
            return _thread_loop[1]
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        threading.Thread(target=serve, name="lexigram-lease-keeper", daemon=True).start()
        started.wait()
        _thread_loop = (os.getpid(), loop)
        return loop


def start_keeper(
    queue: TaskQueueProtocol,
    in_flight: dict[str, Running],
    *,
    lost: Callable[[list[tuple[str, str]]], None],
    loop: asyncio.AbstractEventLoop,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    worker_id: str,
    lag_monitor: LoopLagMonitor | None,
) -> LeaseKeeper | None:
    """Start a worker's keeper: a renewer when the queue has one, a loop watch when lag is.

    Returns:
        The running keeper, or None when there is neither (the loop's heartbeat renews).
    """
    renewer: LeaseRenewerProtocol | None = None
    if isinstance(queue, LeaseRenewingQueueProtocol):
        try:
            renewer = queue.open_lease_renewer()
        except Exception:
            logger.exception(
                "The queue of worker %s could not open a lease renewer; leases are renewed "
                "on the event loop.",
                worker_id,
            )
    if renewer is None and lag_monitor is None:
        return None
    if lag_monitor is not None:
        # Its ticks start now: a worker built long before it started was not blocked then.
        lag_monitor.last_tick = time.monotonic()
    keeper = LeaseKeeper(
        renewer,
        in_flight,
        lease_seconds=float(queue.lease_seconds),
        lost=lost,
        worker_loop=loop,
        logger=logger,
        worker_id=worker_id,
        lag_monitor=lag_monitor,
    )
    keeper.start()
    return keeper
