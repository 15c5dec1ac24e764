"""A worker process's entry in the backend's key-value store, for ``inspect`` and the admin API.

Every process that runs worker pools, the ``lexigram-tasks worker`` command and a booted
`TaskProvider` alike, keeps one record under ``WORKER_KEY_PREFIX + "host:pid"``: its
queues, backend, concurrency, counters and the jobs it runs now. The record lives
`PRESENCE_TTL` seconds and is rewritten every third of that, so a process that died
without unregistering drops out of the listing on its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from lexigram.contracts.tasks import mask_url
from lexigram.tasks._job_event import OUTCOME_LABELS
from lexigram.tasks._outage import OutageLog
from lexigram.tasks.constants import BACKEND_MEMORY, WORKER_KEY_PREFIX

if TYPE_CHECKING:
    from lexigram.contracts.tasks import CacheBackendProtocol, TaskBackendSpec
    from lexigram.tasks.execution import WorkerPool

logger = logging.getLogger(__name__)

PRESENCE_TTL = 15.0
"""Seconds a worker's registration lives without a heartbeat (it beats every third of it)."""


OUTCOMES = tuple(OUTCOME_LABELS.values())
"""The outcomes attempts are counted under, as ``lexigram_tasks_jobs_total`` labels them."""


class WorkerTotals(NamedTuple):
    """Counters of all pools of one process at one moment.

    ``processed`` is the sum of the six outcomes (`OUTCOMES`), each counted as
    ``lexigram_tasks_jobs_total{outcome=...}`` counts it (see `WorkerJobStats`).

    Attributes:
        processed: Attempts that ended.
        succeeded: Attempts that succeeded and were acked.
        failed: Failed attempts, ``retried + dead_lettered`` (not an outcome of its own).
        retried: Failed attempts sent back for a retry.
        dead_lettered: Jobs that failed for good and were dead-lettered.
        in_flight: Jobs running now.
        at: When the numbers were taken (monotonic seconds).
        cancelled: Attempts ended because the job was cancelled.
        released: Attempts interrupted by the worker stopping (the job was requeued).
        lost: Attempts whose lease was lost (another delivery settles the job).
    """

    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    in_flight: int = 0
    at: float = 0.0
    # After `at`: the fields before keep their places for positional construction.
    cancelled: int = 0
    released: int = 0
    lost: int = 0

    def outcome_counts(self) -> dict[str, int]:
        """The attempts by outcome (`OUTCOMES`, in that order); they add up to `processed`."""
        return {name: getattr(self, name) for name in OUTCOMES}


def describe_backend(spec: TaskBackendSpec) -> str:
    """Return ``type (masked url)`` for messages and records; never shows a password."""
    if spec.type == BACKEND_MEMORY or not spec.url:
        return spec.type
    return f"{spec.type} ({mask_url(spec.url)})"


def worker_identity() -> str:
    """``host:pid``: how this process shows up in ``inspect`` and in logs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def pool_totals(pools: Sequence[WorkerPool]) -> WorkerTotals:
    """Sum the counters of every worker of `pools` now."""
    processed = succeeded = failed = retried = dead = in_flight = 0
    cancelled = released = lost = 0
    for pool in pools:
        for worker in pool.workers:
            stats = worker.get_stats()
            processed += stats.jobs_processed
            succeeded += stats.jobs_succeeded
            failed += stats.jobs_failed
            retried += stats.jobs_retried
            dead += stats.jobs_dead_lettered
            cancelled += stats.jobs_cancelled
            released += stats.jobs_released
            lost += stats.jobs_lost
            in_flight += worker.in_flight
    return WorkerTotals(
        processed,
        succeeded,
        failed,
        retried,
        dead,
        in_flight,
        time.monotonic(),
        cancelled,
        released,
        lost,
    )


def running_jobs(pools: Sequence[WorkerPool]) -> list[dict[str, Any]]:
    """The jobs `pools` run now: ``id``, ``task`` and ``started_at`` of each."""
    return [
        {"id": job.id, "task": job.name, "started_at": job.started_at or None}
        for pool in pools
        for worker in pool.workers
        for job in worker.running_jobs()
    ]


class WorkerPresence:
    """Keeps this process registered in `cache` while its pools run.

    Args:
        cache: The backend's key-value store.
        pools: The pools whose counters and running jobs the record shows (read at
            every beat, so pools added later are included).
        queues: The queue names the process consumes.
        backend: How the backend is shown (type and masked URL; never a password).
        worker_id: The process's identity (default `worker_identity`).
    """

    def __init__(
        self,
        cache: CacheBackendProtocol,
        *,
        pools: Callable[[], Sequence[WorkerPool]],
        queues: Sequence[str],
        backend: str,
        worker_id: str | None = None,
    ) -> None:
        self.cache = cache
        self.pools = pools
        self.queues = list(queues)
        self.backend = backend
        self.worker_id = worker_id or worker_identity()
        self.started_at = time.time()
        self._task: asyncio.Task[None] | None = None

    @property
    def key(self) -> str:
        """The record's key in the store."""
        return WORKER_KEY_PREFIX + self.worker_id

    def start(self) -> None:
        """Register in the background and keep the record fresh until `stop`.

        In the background: the pools' first lease goes out first (on a pooled backend
        such as PostgreSQL it would otherwise wait for the registration's connection).
        """
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"presence {self.worker_id}")

    async def stop(self) -> None:
        """Stop beating and remove the record (best effort: it expires anyway)."""
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        try:
            await self.cache.delete(self.key)
        except Exception:
            logger.debug("Could not unregister worker %s.", self.worker_id, exc_info=True)

    async def _loop(self) -> None:
        outage = OutageLog(logger, f"Worker {self.worker_id}", "refresh its registration")
        while True:
            try:
                await self.beat()
            except Exception as exc:
                outage.failed(exc, PRESENCE_TTL / 3)
            else:
                outage.succeeded()
            await asyncio.sleep(PRESENCE_TTL / 3)

    def record(self) -> dict[str, Any]:
        """The record as it is written now."""
        pools = self.pools()
        totals = pool_totals(pools)
        return {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": self.queues,
            "backend": self.backend,
            "started_at": self.started_at,
            "seen_at": time.time(),
            # Jobs each queue's pool runs at once (workers x max_concurrent_tasks).
            "concurrency": max((pool.concurrency for pool in pools), default=0),
            # Attempts that ended, and the same attempts by outcome (they add up to it).
            "processed": totals.processed,
            **totals.outcome_counts(),
            # Failed attempts (retried + dead_lettered): kept for scripts that read it
            # (`inspect --json`). No view shows it: `inspect` and the dashboard show the
            # outcomes above, which say which failure each count is.
            "failed": totals.failed,
            "in_flight": totals.in_flight,
            "running": running_jobs(pools),
        }

    async def beat(self) -> None:
        """Write the record once."""
        await self.cache.set(self.key, json.dumps(self.record()), ttl=PRESENCE_TTL)


__all__ = [
    "OUTCOMES",
    "PRESENCE_TTL",
    "WorkerPresence",
    "WorkerTotals",
    "describe_backend",
    "pool_totals",
    "running_jobs",
    "worker_identity",
]
