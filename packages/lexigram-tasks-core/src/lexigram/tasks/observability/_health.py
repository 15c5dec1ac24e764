"""`TaskHealth`: a health report of the task system (queue, workers, scheduler)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"


@dataclass
class TaskHealth:
    """Health status for task processing system.

    Aggregates health information from queue, workers, and scheduler.

    Attributes:
        status: ``"healthy"``, ``"degraded"`` or ``"unhealthy"``.
        message: Human-readable summary.
        timestamp: When the report was made (epoch seconds).
        queue_size: Jobs waiting in the queue.
        worker_count: Workers configured.
        active_workers: Workers running.
        total_jobs_processed: Execution attempts finished.
        total_jobs_succeeded: Attempts that succeeded.
        total_jobs_failed: Attempts that failed.
        scheduler_enabled: Whether the scheduler runs.
        details: Anything else worth reporting.
    """

    status: str
    message: str
    timestamp: float = field(default_factory=time.time)
    queue_size: int = 0
    worker_count: int = 0
    active_workers: int = 0
    total_jobs_processed: int = 0
    total_jobs_succeeded: int = 0
    total_jobs_failed: int = 0
    scheduler_enabled: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def is_healthy(self) -> bool:
        """Check if system is healthy (status ``"healthy"``)."""
        return self.status == HEALTHY

    @property
    def success_rate(self) -> float:
        """Calculate job success rate, in percent (100.0 before any job ran)."""
        if self.total_jobs_processed == 0:
            return 100.0
        return self.total_jobs_succeeded / self.total_jobs_processed * 100.0

    def to_dict(self) -> dict[str, Any]:
        """Convert to dictionary for serialization.

        Returns:
            ``status``, ``message``, ``timestamp``, ``scheduler_enabled``, ``details``
            and ``metrics`` (the counts and ``success_rate``).
        """
        return {
            "status": self.status,
            "message": self.message,
            "timestamp": self.timestamp,
            "scheduler_enabled": self.scheduler_enabled,
            "details": dict(self.details),
            "metrics": {
                "queue_size": self.queue_size,
                "worker_count": self.worker_count,
                "active_workers": self.active_workers,
                "total_jobs_processed": self.total_jobs_processed,
                "total_jobs_succeeded": self.total_jobs_succeeded,
                "total_jobs_failed": self.total_jobs_failed,
                "success_rate": self.success_rate,
            },
        }
