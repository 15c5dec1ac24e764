"""Observability: execution dashboard, health report and lifecycle counters."""

from __future__ import annotations

from lexigram.tasks.observability._dashboard import ExecutionRecord, TaskDashboard
from lexigram.tasks.observability._health import TaskHealth
from lexigram.tasks.observability._metrics import TaskMetricsCollector

__all__ = ["ExecutionRecord", "TaskDashboard", "TaskHealth", "TaskMetricsCollector"]
