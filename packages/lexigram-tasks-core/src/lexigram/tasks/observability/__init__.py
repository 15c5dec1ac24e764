"""Observability: execution dashboard, health report, lifecycle counters and tracing.

`TracingObserver` makes OpenTelemetry spans of job attempts when the optional
``opentelemetry-api`` package is installed (``pip install 'lexigram-tasks[otel]'``).

`PrometheusObserver` (Prometheus metrics of the job event stream) is imported from here
on first use only, as it needs the optional ``prometheus-client`` package
(``pip install 'lexigram-tasks[prometheus]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lexigram.tasks.observability._dashboard import ExecutionRecord, TaskDashboard
from lexigram.tasks.observability._health import TaskHealth
from lexigram.tasks.observability._metrics import TaskMetricsCollector
from lexigram.tasks.observability._tracing import TracingObserver

if TYPE_CHECKING:
    from lexigram.tasks.observability._prometheus import PrometheusObserver as PrometheusObserver


def __getattr__(name: str) -> Any:
    if name == "PrometheusObserver":
        from lexigram.tasks.observability._prometheus import (  # noqa: PLC0415 - optional extra
            PrometheusObserver,
        )

        return PrometheusObserver
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "ExecutionRecord",
    "TaskDashboard",
    "TaskHealth",
    "TaskMetricsCollector",
    "TracingObserver",
]
