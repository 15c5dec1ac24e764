"""Health of the task provider: queue probes, worker and scheduler state, worst status wins."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from lexigram.contracts.tasks import TaskQueueProtocol, mask_url
from lexigram.di import HealthCheckResult, HealthStatus
from lexigram.tasks.execution import WorkerPool
from lexigram.tasks.scheduling import TaskScheduler

logger = logging.getLogger(__name__)


async def _probe(name: str, queue: TaskQueueProtocol, timeout: float) -> HealthCheckResult:
    try:
        pending = await asyncio.wait_for(queue.get_task_count(), timeout)
    except TimeoutError:
        return HealthCheckResult(
            HealthStatus.UNHEALTHY,
            f"get_task_count() did not answer within {timeout}s.",
            component=name,
        )
    except Exception as exc:  # any failure of a probe is the answer, not a crash
        # Backend errors mask credentials; mask_url guards against any that do not.
        return HealthCheckResult(
            HealthStatus.UNHEALTHY,
            mask_url(f"get_task_count() failed: {type(exc).__name__}: {exc}"),
            component=name,
        )
    return HealthCheckResult(
        HealthStatus.HEALTHY, details={"pending_jobs": pending}, component=name
    )


async def probe_queues(
    queues: Mapping[str, TaskQueueProtocol], timeout: float
) -> dict[str, HealthCheckResult]:
    """Probe every queue concurrently with ``get_task_count()`` within `timeout` seconds."""
    names = list(queues)
    results = await asyncio.gather(*(_probe(n, queues[n], timeout) for n in names))
    return dict(zip(names, results, strict=True))


def summarize(
    component: str,
    queues: Mapping[str, HealthCheckResult],
    *,
    pools: Mapping[str, WorkerPool],
    expected_workers: int,
    scheduler: TaskScheduler | None,
) -> HealthCheckResult:
    """Combine queue probes, worker state and scheduler state into one result.

    Args:
        component: The provider's name.
        queues: Probe results by backend name.
        pools: Worker pools by backend name (empty when tasks are disabled).
        expected_workers: Workers each pool should run.
        scheduler: The scheduler, or None when it is disabled.

    Returns:
        The worst status of all parts; details hold each part.
    """
    parts: dict[str, HealthCheckResult] = {f"queue:{n}": r for n, r in queues.items()}
    for name, pool in pools.items():
        stats = pool.get_pool_stats()
        active = int(stats.get("active_workers", 0))
        status = HealthStatus.HEALTHY if active >= expected_workers else HealthStatus.DEGRADED
        message = (
            ""
            if status is HealthStatus.HEALTHY
            else f"{active} of {expected_workers} worker(s) are running."
        )
        parts[f"workers:{name}"] = HealthCheckResult(status, message, stats, component=name)
    if scheduler is not None:
        running = scheduler.running
        parts["scheduler"] = HealthCheckResult(
            HealthStatus.HEALTHY if running else HealthStatus.DEGRADED,
            "" if running else "The scheduler is enabled but not running.",
            {"scheduled_jobs": len(scheduler.scheduled_jobs)},
            component="scheduler",
        )
    combined = HealthCheckResult.combine(parts, component=component)
    details: dict[str, Any] = {
        "queues": {n: {"status": r.status.value, **r.details} for n, r in queues.items()},
        "workers": {n: parts[f"workers:{n}"].details for n in pools},
        "scheduler_enabled": scheduler is not None,
        "checks": dict(combined.details),
    }
    return HealthCheckResult(combined.status, combined.message, details, component=component)


def aggregate_pool_stats(stats: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Return one pool's stats as is, or for several pools their sums plus ``pools``."""
    if len(stats) == 1:
        return next(iter(stats.values()))
    totals: dict[str, Any] = {}
    for pool_stats in stats.values():
        for key, value in pool_stats.items():
            # Sums of counts; system figures (psutil) are per host, not per pool.
            if isinstance(value, int | float) and not key.startswith("system_"):
                totals[key] = totals.get(key, 0) + value
    processed = totals.get("total_jobs_processed", 0)
    weighted = sum(s["average_processing_time"] * s["total_jobs_processed"] for s in stats.values())
    totals["average_processing_time"] = weighted / processed if processed else 0.0
    totals["pools"] = dict(stats)
    return totals
