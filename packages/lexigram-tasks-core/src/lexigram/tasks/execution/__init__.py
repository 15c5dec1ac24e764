"""Job execution: handler registry, worker, worker pool, and their stats."""

from __future__ import annotations

from lexigram.tasks.execution._pool import WorkerPool
from lexigram.tasks.execution._registry import HandlerRegistry
from lexigram.tasks.execution._stats import TaskWorkerServices, WorkerJobStats
from lexigram.tasks.execution._worker import TaskWorker

__all__ = ["HandlerRegistry", "TaskWorker", "TaskWorkerServices", "WorkerJobStats", "WorkerPool"]
