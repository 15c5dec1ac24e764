"""Job execution: task options, handler registry, worker, worker pool, and their stats."""

from __future__ import annotations

from lexigram.tasks.execution._cancel import shield_cancellation
from lexigram.tasks.execution._options import DEFAULT_OPTIONS, Reject, Retry, TaskOptions
from lexigram.tasks.execution._params import INJECTED
from lexigram.tasks.execution._pool import WorkerPool
from lexigram.tasks.execution._registry import HandlerRegistry
from lexigram.tasks.execution._runner import JobRunner
from lexigram.tasks.execution._settle import Settler
from lexigram.tasks.execution._stats import TaskWorkerServices, WorkerJobStats
from lexigram.tasks.execution._worker import TaskWorker

__all__ = [
    "DEFAULT_OPTIONS",
    "INJECTED",
    "HandlerRegistry",
    "JobRunner",
    "Reject",
    "Retry",
    "Settler",
    "TaskOptions",
    "TaskWorker",
    "TaskWorkerServices",
    "WorkerJobStats",
    "WorkerPool",
    "shield_cancellation",
]
