"""Observability: execution dashboard, health report, lifecycle counters and tracing.

`TracingObserver` makes OpenTelemetry spans of job attempts when the optional
``opentelemetry-api`` package is installed (``pip install 'lexigram-tasks[otel]'``).

`PrometheusObserver` (Prometheus metrics of the job event stream) needs the optional
``prometheus-client`` package (``pip install 'lexigram-tasks[prometheus]'``). Every name is
imported from here on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lexigram.tasks._lazy import lazy_exports

if TYPE_CHECKING:
    from lexigram.tasks.observability._dashboard import ExecutionRecord, TaskDashboard
    from lexigram.tasks.observability._health import TaskHealth
    from lexigram.tasks.observability._metrics import TaskMetricsCollector
    from lexigram.tasks.observability._prometheus import PrometheusObserver as PrometheusObserver
    from lexigram.tasks.observability._tracing import TracingObserver

# Each name is imported on first use (the block above lists them): the CLI worker imports
# `_tracing` alone, and importing a submodule runs this file first.
__getattr__, __dir__ = lazy_exports(__name__)

__all__ = [
    "ExecutionRecord",
    "TaskDashboard",
    "TaskHealth",
    "TaskMetricsCollector",
    "TracingObserver",
]
