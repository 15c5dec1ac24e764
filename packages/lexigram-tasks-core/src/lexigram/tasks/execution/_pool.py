"""`WorkerPool`: several `TaskWorker`s on one queue, with aggregate stats and scaling."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks import HookRegistryProtocol, TaskManagerProtocol, TaskQueueProtocol
from lexigram.tasks._worker_settings import settings_or_model_defaults
from lexigram.tasks.concurrency._task_rate import TaskRateLimiters
from lexigram.tasks.dlq import DeadLetterQueue, PersistentDeadLetterQueue
from lexigram.tasks.execution._registry import HandlerRegistry
from lexigram.tasks.execution._stats import TaskWorkerServices, WorkerJobStats
from lexigram.tasks.execution._worker import TaskWorker
from lexigram.tasks.middleware import TaskMiddlewarePipeline

if TYPE_CHECKING:
    from lexigram.tasks._worker_settings import AnyWorkerSettings


try:  # optional: system figures in get_pool_stats (psutil is not a dependency)
    _psutil: Any = importlib.import_module("psutil")
except ImportError:  # pragma: no cover - depends on the environment
    _psutil = None


class WorkerPool:
    """Pool of task workers with monitoring and scaling.

    All workers consume the same queue and share the services (DLQ, result store,
    hooks, container...). A `DeadLetterQueue` is created when none is given, so every
    dead-lettered job of the pool lands in one place (`pool.dead_letter_queue`).

    Args:
        queue: Queue the workers pull from.
        handler_registry: Dict of task name -> handler, or a `HandlerRegistry` (handlers
            registered after the pool started are seen by every worker).
        size: Number of workers.
        logger: Logger for the workers (overrides `services.logger`).
        task_manager: Task manager tracking the workers' background tasks.
        dead_letter_queue: Shared DLQ for permanently failed jobs.
        hooks: Hook registry for lifecycle events.
        container: DI container for handler parameters.
        middleware_pipeline: Middleware around every execution.
        config: Worker configuration shared by all workers.
        services: Base services; the explicit arguments above override its fields.

    Example:
        pool = WorkerPool(queue, handlers, size=4)
        await pool.start()
        stats = pool.get_pool_stats()
        await pool.scale_to(8)
        await pool.stop()
    """

    def __init__(  # noqa: PLR0917 - the published positional signature
        self,
        queue: TaskQueueProtocol,
        handler_registry: Mapping[str, Callable[..., Any]] | HandlerRegistry,
        size: int = 1,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        task_manager: TaskManagerProtocol | None = None,
        dead_letter_queue: DeadLetterQueue | PersistentDeadLetterQueue | None = None,
        hooks: HookRegistryProtocol | None = None,
        container: Any = None,
        middleware_pipeline: TaskMiddlewarePipeline | None = None,
        *,
        config: AnyWorkerSettings | None = None,
        services: TaskWorkerServices | None = None,
    ) -> None:
        if size < 0:
            msg = f"WorkerPool size must be 0 or more, got {size!r}."
            raise ValueError(msg)
        base = services if services is not None else TaskWorkerServices()
        overrides: dict[str, Any] = {
            "logger": logger,
            "task_manager": task_manager,
            "dead_letter_queue": dead_letter_queue,
            "hooks": hooks,
            "container": container,
        }
        changes = {key: value for key, value in overrides.items() if value is not None}
        self.services = dataclasses.replace(base, **changes)
        if self.services.dead_letter_queue is None:
            self.services.dead_letter_queue = DeadLetterQueue()
        if self.services.task_rate_limiters is None:  # one bucket per task for all workers
            self.services.task_rate_limiters = TaskRateLimiters()
        self.queue = queue
        self.handlers = handler_registry
        self.size = size
        self.config = settings_or_model_defaults(config)
        self.middleware_pipeline = middleware_pipeline
        self.workers: list[TaskWorker] = []
        self.running = False
        self._next_id = 1
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"WorkerPool(size={self.size}, running={self.running})"

    @property
    def concurrency(self) -> int:
        """Jobs the pool runs at once: `size` workers of ``max_concurrent_tasks`` each."""
        return self.size * self.config.max_concurrent_tasks

    @property
    def dead_letter_queue(self) -> DeadLetterQueue | PersistentDeadLetterQueue:
        """The DLQ shared by every worker of the pool."""
        dlq = self.services.dead_letter_queue
        assert dlq is not None  # noqa: S101 - set in __init__
        return dlq

    def refresh_handlers(self) -> dict[str, Callable[..., Any]]:
        """Refresh handlers from the registry; returns the current name -> handler map.

        Workers look handlers up on every job, so this is only needed to read the
        current mapping; it never has to be called for new handlers to be used.
        """
        if isinstance(self.handlers, HandlerRegistry):
            return self.handlers.to_dict()
        return dict(self.handlers)

    async def start(self) -> None:
        """Start the worker pool: create and start `size` workers ("worker-1", ...)."""
        async with self._lock:
            if self.running:
                return
            self.running = True
            while len(self.workers) < self.size:
                self.workers.append(self._new_worker())
            for worker in self.workers:
                await worker.start()

    async def stop(self, drain: bool = False, timeout: float | None = 30.0) -> None:
        """Stop the worker pool.

        Args:
            drain: Let each worker finish its running jobs (up to `timeout`) first;
                False cancels them now (they are nacked and requeued).
            timeout: Per-worker seconds to wait when draining (None: no limit).
        """
        async with self._lock:
            self.running = False
            await asyncio.gather(*(w.stop(drain=drain, timeout=timeout) for w in self.workers))

    async def scale_to(self, new_size: int) -> None:
        """Scale the pool to `new_size` workers; removed workers drain before stopping.

        Args:
            new_size: Target number of workers.
        """
        if new_size < 0:
            msg = f"WorkerPool.scale_to needs a size of 0 or more, got {new_size!r}."
            raise ValueError(msg)
        async with self._lock:
            self.size = new_size
            while len(self.workers) < new_size:
                worker = self._new_worker()
                self.workers.append(worker)
                if self.running:
                    await worker.start()
            removed = self.workers[new_size:]
            del self.workers[new_size:]
        timeout = self.config.shutdown_timeout
        await asyncio.gather(*(w.stop(drain=True, timeout=timeout) for w in removed))

    def get_worker_stats(self) -> list[WorkerJobStats]:
        """Get statistics for all workers."""
        return [worker.get_stats() for worker in self.workers]

    def get_pool_stats(self) -> dict[str, Any]:
        """Get aggregate pool statistics.

        The attempts are counted by outcome, the outcomes of ``lexigram_tasks_jobs_total``
        (see `WorkerJobStats`): ``total_jobs_processed`` is the sum of
        ``total_jobs_succeeded``, ``total_jobs_retried``, ``total_jobs_dead_lettered``,
        ``total_jobs_cancelled``, ``total_jobs_released`` and ``total_jobs_lost``.
        ``total_jobs_failed`` is kept for compatibility: failed attempts,
        ``total_jobs_retried + total_jobs_dead_lettered`` (not an outcome of its own).

        Returns:
            ``pool_size``, ``active_workers`` (running ones), ``busy_workers``, the
            counts above, ``average_processing_time``, and with psutil installed
            ``system_cpu_percent`` and ``system_memory_percent``.
        """
        stats = self.get_worker_stats()
        processed = sum(s.jobs_processed for s in stats)
        total_time = sum(s.total_processing_time for s in stats)
        result: dict[str, Any] = {
            "pool_size": len(self.workers),
            "active_workers": sum(1 for w in self.workers if w.running),
            "busy_workers": sum(1 for w in self.workers if w.is_busy()),
            "total_jobs_processed": processed,
            "total_jobs_succeeded": sum(s.jobs_succeeded for s in stats),
            "total_jobs_failed": sum(s.jobs_failed for s in stats),
            "total_jobs_retried": sum(s.jobs_retried for s in stats),
            "total_jobs_dead_lettered": sum(s.jobs_dead_lettered for s in stats),
            "total_jobs_cancelled": sum(s.jobs_cancelled for s in stats),
            "total_jobs_released": sum(s.jobs_released for s in stats),
            "total_jobs_lost": sum(s.jobs_lost for s in stats),
            "average_processing_time": total_time / processed if processed else 0.0,
        }
        if _psutil is not None:
            result["system_cpu_percent"] = _psutil.cpu_percent(interval=None)
            result["system_memory_percent"] = _psutil.virtual_memory().percent
        return result

    def _new_worker(self) -> TaskWorker:
        worker_id = f"worker-{self._next_id}"
        self._next_id += 1
        return TaskWorker(
            worker_id,
            self.queue,
            self.handlers,
            self.config,
            self.services,
            middleware_pipeline=self.middleware_pipeline,
        )
