"""One worker process: a `WorkerPool` per queue over one backend, plus its stores.

`WorkerRuntime` builds the queues (checking that the backend answers), the backend's
shared stores (DLQ, results, progress; in-memory ones where it has none), the hook
registry with the installed ``lexigram.tasks.plugins`` plugins, the rate limiter and
one pool per queue, all through the composition root `TaskProvider` uses
(`lexigram.tasks.di._stack`), and registers the process in the backend's key-value
store so that ``lexigram-tasks inspect`` can list running workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks import (
    RateLimiterProtocol,
    TaskBackendSpec,
    TaskQueueProtocol,
)
from lexigram.tasks._backends import QueueCheck, TaskBackendRegistry, probe_all
from lexigram.tasks._presence import (
    WorkerPresence,
    WorkerTotals,
    pool_totals,
    running_jobs,
    worker_identity,
)
from lexigram.tasks._producer import install_task_queues, routing_table
from lexigram.tasks.cli._app import LoadedApp
from lexigram.tasks.cli._context import (
    Stores,
    close_quietly,
    describe,
    open_queue,
    open_stores,
    release_backend,
)
from lexigram.tasks.cli._named import backend_field, config_errors
from lexigram.tasks.cli._opener import QueueOpener
from lexigram.tasks.di._other_queues import OtherQueues
from lexigram.tasks.di._stack import (
    BackendStack,
    build_config_rate_limiter,
    build_hooks,
    build_pool,
    build_stack,
    observe_enqueues,
)
from lexigram.tasks.events import EventObserver
from lexigram.tasks.execution import WorkerPool
from lexigram.tasks.hooks import HookRegistry

if TYPE_CHECKING:
    from lexigram.tasks._worker_settings import AnyWorkerSettings
    from lexigram.tasks.config import TaskConfig

logger = logging.getLogger("lexigram.tasks.cli")


class WorkerRuntime:
    """Runs the APP's handlers on the given queues until stopped.

    Args:
        app: The loaded APP (handlers, and possibly its own queue).
        config: The effective config (worker section, rate limit); None when nothing
            is configured (every default).
        spec: The backend spec (``queue_name`` is the first queue).
        queue_names: Queues to consume; one pool each.
        worker_config: Worker settings with the command-line overrides applied.
        preset_queue: A queue object to consume instead of building one for its name
            (a `TaskProvider`'s own queue).
        observers: More observers of the workers' job events (e.g. metrics).
    """

    def __init__(
        self,
        app: LoadedApp,
        config: TaskConfig | None,
        spec: TaskBackendSpec,
        queue_names: list[str],
        *,
        worker_config: AnyWorkerSettings,
        preset_queue: TaskQueueProtocol | None = None,
        observers: Sequence[EventObserver] = (),
    ) -> None:
        self.app = app
        self.config = config
        self.spec = spec
        self.queue_names = queue_names
        self.worker_config = worker_config
        self.preset_queue = preset_queue
        self.observers = tuple(observers)
        self.worker_id = worker_identity()
        self.queues: list[TaskQueueProtocol] = []
        self.pools: list[WorkerPool] = []
        self.stores = Stores()
        self.stack: BackendStack | None = None
        self.rate_limiter: RateLimiterProtocol | None = None
        self.hooks = HookRegistry()
        self.started_at = time.time()
        self.presence: WorkerPresence | None = None
        self._stop_observing: Callable[[], None] | None = None
        self._uninstall_queues: Callable[[], None] | None = None
        self._others: dict[str, TaskQueueProtocol] = {}
        self._opener: QueueOpener | None = None
        self._other_queues: OtherQueues | None = None

    def __repr__(self) -> str:
        return f"WorkerRuntime({self.worker_id!r}, queues={self.queue_names!r})"

    async def start(self, connect_timeout: float) -> None:
        """Connect, build the pools and start consuming.

        The queue, stores, rate limiter, hooks and pools are built by the same code
        as `TaskProvider` builds them (`lexigram.tasks.di._stack`).

        Raises:
            TaskQueueError: The backend failed or does not answer (a
                `BackendConnectionError`, see `probe`).
        """
        first = self.queue_names[0]
        with config_errors(self.spec.name):
            self.stack = build_stack(
                self.spec.name,
                replace(self.spec, queue_name=first),
                field=backend_field(self.spec),
                registry=TaskBackendRegistry.with_defaults(),
                queue=self._preset(first),
            )
        self.queues = [self.stack.queue]
        for name in self.queue_names[1:]:
            self.queues.append(self._preset(name) or open_queue(self.spec, name))
        # Every other configured backend, where handlers' ``.delay()`` may send jobs.
        self._opener = QueueOpener(self.config, self.spec)
        others = self._opener.configured_backends()
        self._others = {name: check.queue for name, check in others.items()}
        # Every configured backend answers before anything starts, as at a provider's boot.
        await probe_all(
            [*(QueueCheck(queue, self.spec) for queue in self.queues), *others.values()],
            connect_timeout,
        )
        self.stores = open_stores(self.spec, "cache")
        if not self.stack.has_shared_dead_letters:
            logger.warning(
                "The %s backend has no shared dead-letter storage: the records of jobs that "
                "fail for good (what `lexigram-tasks dlq` lists and retries) are kept in this "
                "process only and lost when it exits; its guide says where it can keep them.",
                describe(self.spec),
            )
        self.rate_limiter = build_config_rate_limiter(self.config, self.stack)
        # A provider APP's own hooks (its observers and metrics), with the plugins loaded
        # as its boot would; otherwise a registry of the installed plugins.
        if self.app.hooks is not None:
            self.hooks = self.app.hooks
            self.hooks.load_entry_point_plugins()
        else:
            self.hooks = build_hooks()
        self._stop_observing = observe_enqueues(self.hooks)  # jobs handlers enqueue
        if self.worker_config.worker_count == 0:
            logger.info(
                "tasks.worker.worker_count is 0: an application's TaskProvider runs no "
                "worker with it; this command runs one per queue, as asked."
            )
        for queue in self.queues:
            self.pools.append(
                build_pool(
                    self.stack,
                    self.app.handlers,
                    config=self.config,
                    size=max(1, self.worker_config.worker_count),
                    queue=queue,
                    worker_config=self.worker_config,
                    rate_limiter=self.rate_limiter,
                    hooks=self.hooks,
                    dashboard=self.app.dashboard,
                    middleware_pipeline=self.app.middleware_pipeline,
                    observers=self.observers,
                )
            )
        for pool in self.pools:
            await pool.start()
        # Handlers that enqueue follow-up jobs (``other.delay()``) use these queues: the
        # ones consumed here, and every other configured backend under its name, routed
        # as a TaskProvider routes them.
        own = {q.queue_name: q for q in self.queues}
        routes = {**routing_table({self.spec.name: self.queues[0], **self._others}), **own}
        self._other_queues = OtherQueues(self.stack)
        self._uninstall_queues = install_task_queues(
            self.queues[0], routes, open_other=self._other_queues
        )
        if self.stores.cache is not None:
            self.presence = WorkerPresence(
                self.stores.cache,
                pools=lambda: self.pools,
                queues=self.queue_names,
                backend=describe(self.spec),
                worker_id=self.worker_id,
            )
            self.presence.start()
        plugins = self.hooks.plugin_names()
        size = max(1, self.worker_config.worker_count)
        slots = self.worker_config.max_concurrent_tasks
        # More than one worker per queue (worker.worker_count) multiplies the slots.
        shape = f"{size} workers x {slots} = {size * slots}" if size > 1 else str(slots)
        logger.info(
            "Worker %s consuming %s on %s (%d handler(s), concurrency %s per queue%s).",
            self.worker_id,
            ", ".join(self.queue_names),
            describe(self.spec),
            len(self.app.handlers),
            shape,
            f", plugins {', '.join(plugins)}" if plugins else "",
        )

    def _preset(self, name: str) -> TaskQueueProtocol | None:
        own = self.preset_queue
        if own is not None and own.queue_name == name:
            return own
        return None

    def totals(self) -> WorkerTotals:
        """Sum the counters of every pool now."""
        return pool_totals(self.pools)

    def running_jobs(self) -> list[dict[str, Any]]:
        """The jobs this process runs now: ``id``, ``task`` and ``started_at`` of each."""
        return running_jobs(self.pools)

    async def drain(self, timeout: float) -> None:
        """Stop taking jobs, let running ones finish for up to `timeout` s, nack the rest."""
        await asyncio.gather(*(pool.stop(drain=True, timeout=timeout) for pool in self.pools))

    async def close(self) -> None:
        """Unregister, then close stores and queues."""
        if self.presence is not None:
            await self.presence.stop()
            self.presence = None
        if self._stop_observing is not None:
            self._stop_observing()
            self._stop_observing = None
        if self._uninstall_queues is not None:
            self._uninstall_queues()
            self._uninstall_queues = None
        if self._other_queues is not None:
            await self._other_queues.close()
            self._other_queues = None
        await self.stores.close()
        if self.stack is not None:
            await self.stack.close()
        await close_quietly(*self.queues[1:], self.rate_limiter)
        if self._opener is not None:
            await self._opener.close()
            self._opener = None
        await release_backend(self.spec)


async def check_backends(
    config: TaskConfig | None, spec: TaskBackendSpec, connect_timeout: float
) -> None:
    """The worker's start-up check of every backend it uses, without starting a worker.

    A supervisor of several worker processes makes it before it starts any, so a backend
    that does not answer is reported once, not by each child: the same queues and the same
    `probe_all` as `WorkerRuntime.start`, then closed.

    Raises:
        TaskQueueError: A backend is unreachable, refuses the connection or never answers.
    """
    opener = QueueOpener(config, spec)
    try:
        checks = [QueueCheck(opener(), spec), *opener.configured_backends().values()]
        await probe_all(checks, connect_timeout)
    finally:
        await opener.close()
        await release_backend(spec)
