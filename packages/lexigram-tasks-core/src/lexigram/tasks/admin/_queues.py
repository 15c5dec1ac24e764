"""Queue counts, the registry of running workers, and a job's status."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from lexigram.contracts.tasks import JobStatus, TaskNotFoundError, TaskQueueProtocol
from lexigram.tasks.admin._errors import OperationError
from lexigram.tasks.constants import WORKER_KEY_PREFIX
from lexigram.tasks.handles import JobHandle


async def queue_counts(queue: TaskQueueProtocol, name: str) -> dict[str, Any]:
    """Count a queue's jobs: waiting (delayed and retrying included), retrying, in flight.

    Returns:
        ``queue``, ``waiting``, ``retrying``, ``in_flight`` and ``total`` (waiting plus
        in flight).
    """
    waiting, retrying, running = await asyncio.gather(
        queue.count(name, JobStatus.PENDING),
        queue.count(name, JobStatus.RETRYING),
        queue.count(name, JobStatus.RUNNING),
    )
    return {
        "queue": name,
        "waiting": waiting,
        "retrying": retrying,
        "in_flight": running,
        "total": waiting + running,
    }


async def registered_workers(cache: Any) -> list[dict[str, Any]]:
    """Return the live worker registrations in a backend's cache store, sorted by id.

    Each is the dict a ``lexigram-tasks worker`` process writes and refreshes (``id``,
    ``queues``, counters, ``running``: the jobs it runs at its last heartbeat).
    """
    found: list[dict[str, Any]] = []
    for key in await cache.keys(WORKER_KEY_PREFIX):
        raw = await cache.get(key)
        if raw is None:
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return sorted(found, key=lambda r: str(r.get("id")))


async def job_status(handle: JobHandle[Any]) -> dict[str, Any]:
    """A job's status and its last progress report, as ``job status --json`` prints them.

    Raises:
        OperationError: Neither the queue nor the result store knows the job.
    """
    try:
        status = await handle.status()
    except TaskNotFoundError as exc:
        raise OperationError(exc.message) from None
    info = await handle.progress()
    return {
        "id": handle.id,
        "status": status.value,
        "progress": None
        if info is None
        else {
            "current": info.current,
            "total": info.total,
            "percentage": info.percentage,
            "message": info.message,
            "updated_at": info.updated_at,
        },
    }


def watched_queues(default: str, workers: list[dict[str, Any]] | None) -> list[str]:
    """The queues to show when none is named: the default one, then those workers consume."""
    names = [default]
    for record in workers or []:
        names.extend(str(q) for q in record.get("queues") or [])
    return list(dict.fromkeys(names))
