"""Task middleware: hooks around every execution (logging, metrics, the timeout, your own)."""

from __future__ import annotations

from lexigram.tasks.middleware._base import (
    TaskExecutionContext,
    TaskMiddleware,
    TaskMiddlewarePipeline,
)
from lexigram.tasks.middleware._builtin import (
    LoggingMiddleware,
    MetricsMiddleware,
    TimeoutMiddleware,
)

__all__ = [
    "LoggingMiddleware",
    "MetricsMiddleware",
    "TaskExecutionContext",
    "TaskMiddleware",
    "TaskMiddlewarePipeline",
    "TimeoutMiddleware",
]
