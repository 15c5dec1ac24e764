"""Observability: execution dashboard, health report, lifecycle counters and tracing.

`TracingObserver` makes OpenTelemetry spans of job attempts when the optional
``opentelemetry-api`` package is installed (``pip install 'lexigram-tasks[otel]'``).

`PrometheusObserver` (Prometheus metrics of the job event stream) needs the optional
``prometheus-client`` package (``pip install 'lexigram-tasks[prometheus]'``). Every name is
imported from here on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lexigram.tasks.observability._dashboard import ExecutionRecord, TaskDashboard
    from lexigram.tasks.observability._health import TaskHealth
    from lexigram.tasks.observability._metrics import TaskMetricsCollector
    from lexigram.tasks.observability._prometheus import PrometheusObserver as PrometheusObserver
    from lexigram.tasks.observability._tracing import TracingObserver

# Each name is imported on first use: the CLI worker imports `_tracing` alone, and
# importing a submodule runs this file first.
_HOMES = {
    "ExecutionRecord": "_dashboard",
    "TaskDashboard": "_dashboard",
    "TaskHealth": "_health",
    "TaskMetricsCollector": "_metrics",
    "PrometheusObserver": "_prometheus",  # needs the optional prometheus-client
    "TracingObserver": "_tracing",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ExecutionRecord",
    "TaskDashboard",
    "TaskHealth",
    "TaskMetricsCollector",
    "TracingObserver",
]
