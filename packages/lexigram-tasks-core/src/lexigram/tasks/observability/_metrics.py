"""`TaskMetricsCollector`: counters per task and lifecycle status, fed by job events."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from lexigram.tasks.events import JobEvent

# Hook action -> the status it counts.
_ACTION_STATUS = {
    "task.queued": "queued",
    "task.started": "started",
    "task.completed": "completed",
    "task.failed": "failed",
}


class _ObservableHooks(Protocol):
    def add_observer(self, action: str, callback: Any) -> Callable[[], None]: ...


class TaskMetricsCollector:
    """Counts lifecycle events per task name and status.

    It is an observer of the job event stream (pass it in
    ``TaskWorkerServices(observers=[metrics])`` and add it to `producer_events()`): every
    `JobEvent` counts under its kind ("queued", "started", "completed", "retrying",
    "failed", ...). `attach` subscribes it to a `HookRegistry`'s four actions instead;
    `record` counts by hand. `snapshot` returns plain dicts for a metrics endpoint.

    Example:
        metrics = TaskMetricsCollector()
        pool = WorkerPool(queue, handlers, services=TaskWorkerServices(observers=[metrics]))
        ...
        metrics.snapshot()["totals"]["failed"]
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}
        self._started = time.time()
        self._detach: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"TaskMetricsCollector(tasks={len(self._counts)})"

    def record(self, task_name: str, status: str, count: int = 1) -> None:
        """Add `count` to the counter of (`task_name`, `status`).

        Args:
            task_name: Task name.
            status: Any status label (``"queued"``, ``"completed"``, ...).
            count: Amount to add.
        """
        with self._lock:
            per_task = self._counts.setdefault(task_name, {})
            per_task[status] = per_task.get(status, 0) + count

    def observe(self, action: str | JobEvent, payload: Any = None) -> None:
        """Count a `JobEvent` under its kind, or a hook action's payload under its status.

        Args:
            action: A job event (the `EventObserver` call), or a hook action name.
            payload: The hook action's payload (its ``task_name`` is counted).
        """
        if isinstance(action, JobEvent):
            self.record(action.task, action.kind)
            return
        status = _ACTION_STATUS.get(action, action)
        self.record(str(getattr(payload, "task_name", "unknown")), status)

    def attach(self, hooks: _ObservableHooks) -> None:
        """Observe the four lifecycle actions of a `HookRegistry`."""
        for action in _ACTION_STATUS:
            observer = _bind(self, action)
            self._detach.append(hooks.add_observer(action, observer))

    def detach(self) -> None:
        """Stop observing every registry `attach` subscribed to."""
        while self._detach:
            self._detach.pop()()

    def get(self, task_name: str, status: str) -> int:
        """Return one counter (0 if never recorded)."""
        with self._lock:
            return self._counts.get(task_name, {}).get(status, 0)

    def snapshot(self) -> dict[str, Any]:
        """Return the counters.

        Returns:
            ``{"tasks": {name: {status: n}}, "totals": {status: n},
            "since": <epoch seconds of start/reset>}``.
        """
        with self._lock:
            tasks = {name: dict(counts) for name, counts in self._counts.items()}
        totals: dict[str, int] = {}
        for counts in tasks.values():
            for status, n in counts.items():
                totals[status] = totals.get(status, 0) + n
        return {"tasks": tasks, "totals": totals, "since": self._started}

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._counts.clear()
            self._started = time.time()


def _bind(collector: TaskMetricsCollector, action: str) -> Callable[[Any], None]:
    def observer(payload: Any) -> None:
        collector.observe(action, payload)

    return observer
