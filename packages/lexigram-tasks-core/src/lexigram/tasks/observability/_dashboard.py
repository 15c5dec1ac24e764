"""`TaskDashboard`: recent executions, throughput, error rates and latency percentiles.

The dashboard observes the job event stream (`observe`): every job that finishes
(succeeded, or failed for good) is recorded with its duration when it is passed as
`TaskWorkerServices.dashboard` or added as an observer. Everything is kept in memory and
bounded: `history_size` records overall, per-task latency samples and errors; the
windowed throughput uses one counter per second.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lexigram.tasks.events import COMPLETED, FAILED, JobEvent


@dataclass
class ExecutionRecord:
    """Record of a single task execution.

    Attributes:
        job_id: Id of the job.
        task_name: Task name.
        success: Whether it succeeded.
        duration_ms: Handler time in milliseconds.
        error: Error message of a failure.
        timestamp: When it finished (epoch seconds).
        worker_id: Worker that ran it.
    """

    job_id: str
    task_name: str
    success: bool
    duration_ms: float
    error: str | None = None
    timestamp: float = field(default_factory=time.time)
    worker_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialize the execution record to a plain dictionary."""
        return {
            "job_id": self.job_id,
            "task_name": self.task_name,
            "success": self.success,
            "duration_ms": self.duration_ms,
            "error": self.error,
            "timestamp": self.timestamp,
            "worker_id": self.worker_id,
        }


def percentile(sorted_values: list[float], pct: float) -> float:
    """Return the `pct` percentile (0-100) of sorted values, linearly interpolated."""
    if not sorted_values:
        return 0.0
    rank = (len(sorted_values) - 1) * pct / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return sorted_values[low]
    weight = rank - low
    return sorted_values[low] * (1.0 - weight) + sorted_values[high] * weight


@dataclass
class _TaskStats:
    count: int = 0
    failures: int = 0
    durations: deque[float] = field(default_factory=deque)
    errors: deque[ExecutionRecord] = field(default_factory=deque)


class TaskDashboard:
    """Aggregated task observability dashboard.

    Thread-safe: sync code (a handler in a thread) may record too.

    Example:
        dashboard = TaskDashboard()
        pool = WorkerPool(queue, handlers, services=TaskWorkerServices(dashboard=dashboard))
        ...
        dashboard.get_summary()["error_rate_pct"]

    Args:
        history_size: Records kept for `get_recent_executions`, and latency samples and
            errors kept per task.
        window_seconds: Length of the window of `window_throughput_per_sec`.
        clock: Monotonic clock in seconds (tests may pass a fake one).

    Raises:
        ValueError: A non-positive history size or window.
    """

    def __init__(
        self,
        *,
        history_size: int = 1000,
        window_seconds: float = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if history_size < 1:
            msg = f"TaskDashboard history_size={history_size!r} is below 1. Pass 1 or more."
            raise ValueError(msg)
        if not window_seconds > 0:
            msg = f"TaskDashboard window_seconds={window_seconds!r} is not positive."
            raise ValueError(msg)
        self.history_size = history_size
        self.window_seconds = float(window_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._reset_state()

    def __repr__(self) -> str:
        return (
            f"TaskDashboard(executed={self._total}, failed={self._failed}, "
            f"task_types={len(self._tasks)})"
        )

    def _reset_state(self) -> None:
        self._started = self._clock()
        self._total = 0
        self._failed = 0
        self._history: deque[ExecutionRecord] = deque(maxlen=self.history_size)
        self._tasks: dict[str, _TaskStats] = {}
        # (whole second on the monotonic clock, executions in it), oldest first
        self._per_second: deque[list[int]] = deque()

    def observe(self, event: JobEvent) -> None:
        """Record a job that finished ("completed", or "failed" for good); `EventObserver`."""
        kind = event.kind
        if kind not in (COMPLETED, FAILED):
            return
        self.record_execution(
            event.task,
            job_id=event.job_id,
            duration_ms=(event.duration or 0.0) * 1000.0,
            success=kind == COMPLETED,
            error=event.error,
            worker_id=event.worker_id or None,
        )

    def record_execution(
        self,
        task_name: str,
        *,
        job_id: str = "",
        duration_ms: float = 0.0,
        success: bool = True,
        error: str | None = None,
        worker_id: str | None = None,
    ) -> None:
        """Record a task execution.

        Args:
            task_name: Task name.
            job_id: Id of the job.
            duration_ms: Handler time in milliseconds.
            success: Whether it succeeded.
            error: Error message of a failure.
            worker_id: Worker that ran it.
        """
        record = ExecutionRecord(
            job_id=job_id,
            task_name=task_name,
            success=success,
            duration_ms=duration_ms,
            error=error,
            worker_id=worker_id,
        )
        second = int(self._clock())
        with self._lock:
            self._total += 1
            self._history.append(record)
            stats = self._tasks.get(task_name)
            if stats is None:
                stats = self._tasks[task_name] = _TaskStats()
            stats.count += 1
            stats.durations.append(duration_ms)
            if len(stats.durations) > self.history_size:
                stats.durations.popleft()
            if not success:
                self._failed += 1
                stats.failures += 1
                stats.errors.append(record)
                if len(stats.errors) > self.history_size:
                    stats.errors.popleft()
            if self._per_second and self._per_second[-1][0] == second:
                self._per_second[-1][1] += 1
            else:
                self._per_second.append([second, 1])
            self._prune(second)

    def _prune(self, now_second: float) -> None:
        horizon = now_second - self.window_seconds
        while self._per_second and self._per_second[0][0] < horizon:
            self._per_second.popleft()

    def get_summary(self) -> dict[str, Any]:
        """Get dashboard summary with throughput and error rates.

        Returns:
            ``total_executed``, ``total_failed``, ``error_rate_pct``,
            ``throughput_per_sec`` (since start or reset), ``window_throughput_per_sec``
            (over the last `window_seconds`, or the uptime when shorter),
            ``uptime_seconds`` and ``task_types`` (number of distinct task names).
        """
        now = self._clock()
        with self._lock:
            self._prune(now)
            uptime = max(now - self._started, 0.0)
            window = min(self.window_seconds, uptime)
            in_window = sum(
                count for second, count in self._per_second if second >= now - self.window_seconds
            )
            return {
                "total_executed": self._total,
                "total_failed": self._failed,
                "error_rate_pct": _pct(self._failed, self._total),
                "throughput_per_sec": self._total / uptime if uptime > 0 else 0.0,
                "window_throughput_per_sec": in_window / window if window > 0 else 0.0,
                "uptime_seconds": uptime,
                "task_types": len(self._tasks),
            }

    def get_per_task_stats(self) -> dict[str, dict[str, Any]]:
        """Get per-task-type statistics with latency percentiles.

        Returns:
            Task name -> ``count``, ``failures``, ``error_rate_pct`` and, when durations
            were recorded, ``latency`` with ``avg_ms``, ``min_ms``, ``max_ms``,
            ``p50_ms``, ``p95_ms`` and ``p99_ms`` (over the last `history_size` samples).
        """
        with self._lock:
            snapshot = {
                name: (stats.count, stats.failures, sorted(stats.durations))
                for name, stats in self._tasks.items()
            }
        result: dict[str, dict[str, Any]] = {}
        for name, (count, failures, durations) in snapshot.items():
            entry: dict[str, Any] = {
                "count": count,
                "failures": failures,
                "error_rate_pct": _pct(failures, count),
            }
            if durations:
                entry["latency"] = {
                    "avg_ms": sum(durations) / len(durations),
                    "min_ms": durations[0],
                    "max_ms": durations[-1],
                    "p50_ms": percentile(durations, 50),
                    "p95_ms": percentile(durations, 95),
                    "p99_ms": percentile(durations, 99),
                }
            result[name] = entry
        return result

    def get_recent_executions(
        self, *, limit: int = 50, task_name: str | None = None
    ) -> list[dict[str, Any]]:
        """Get recent execution history, newest first.

        Args:
            limit: Most records to return.
            task_name: Only records of this task.
        """
        with self._lock:
            records: Iterable[ExecutionRecord] = reversed(self._history)
            out: list[dict[str, Any]] = []
            for record in records:
                if len(out) >= limit:
                    break
                if task_name is None or record.task_name == task_name:
                    out.append(record.to_dict())
            return out

    def get_error_breakdown(self) -> dict[str, list[dict[str, Any]]]:
        """Get recent errors grouped by task type, newest first.

        Returns:
            Task name -> list of ``{"job_id", "error", "timestamp"}`` (tasks without
            errors are left out).
        """
        with self._lock:
            return {
                name: [
                    {"job_id": r.job_id, "error": r.error, "timestamp": r.timestamp}
                    for r in reversed(stats.errors)
                ]
                for name, stats in self._tasks.items()
                if stats.errors
            }

    def reset(self) -> None:
        """Reset all counters and history."""
        with self._lock:
            self._reset_state()


def _pct(part: int, whole: int) -> float:
    return part / whole * 100.0 if whole else 0.0
