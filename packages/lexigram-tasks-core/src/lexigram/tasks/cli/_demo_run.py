"""Running the demo: worker pools, a scheduler, workflows and a rate-limited queue.

Everything runs in this process on one backend (memory unless ``--backend`` names
another), on queues named for this run only, which are emptied and whose results and
dead letters are removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lexigram.contracts.tasks import (
    Job,
    JobTemplate,
    Priority,
    ProgressSnapshot,
    TaskBackendSpec,
    TaskQueueProtocol,
)
from lexigram.tasks._backends import probe
from lexigram.tasks.cli._context import (
    close_quietly,
    open_queue,
    open_stores,
    release_backend,
)
from lexigram.tasks.cli._demo_app import REGIONS, build_registry, make_batch
from lexigram.tasks.cli._demo_report import (
    CHANNELS,
    PARTNER_RATE,
    DemoReport,
    DemoSettings,
    describe_flow,
    expected_workflow_results,
)
from lexigram.tasks.concurrency import QueueRateLimiter
from lexigram.tasks.config import RetryConfig, TaskWorkerConfig
from lexigram.tasks.decorators import enqueue_jobs
from lexigram.tasks.dlq import InMemoryDLQBackend, PersistentDeadLetterQueue
from lexigram.tasks.execution import TaskWorkerServices, WorkerPool
from lexigram.tasks.progress import InMemoryProgressTracker
from lexigram.tasks.results import InMemoryResultStore
from lexigram.tasks.scheduling import TaskScheduler
from lexigram.tasks.workflows import TaskChain, TaskChord, TaskGroup, TaskStep

logger = logging.getLogger(__name__)

EVERY_SECOND = "* * * * * *"
_JOB_TIMEOUT = 30.0  # seconds a workflow step waits for its job (a safety net)


class DemoView:
    """What the demo tells its display; the default does nothing (tests, plain output)."""

    def stage(self, text: str) -> None:
        """A new phase began."""

    def add_bar(self, key: str, label: str, total: int) -> None:
        """Show a progress bar."""

    def update_bar(self, key: str, completed: float, total: float | None = None) -> None:
        """Move a progress bar."""


class JobEvents:
    """The worker's lifecycle hooks: per-job outcome futures, and counters by task.

    Passed as `TaskWorkerServices.hooks`. "task.completed" and "task.failed" fire once
    per job when it succeeds or is dead-lettered (retried attempts fire neither).
    """

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        self.done: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.started_order: list[str] = []
        self.listeners: list[Callable[[str, str, bool], None]] = []

    def expect(self, job_id: str) -> asyncio.Future[bool]:
        """A future resolved with True (succeeded) or False (dead-lettered)."""
        future = self._waiting.get(job_id)
        if future is None:
            future = self._waiting[job_id] = asyncio.get_running_loop().create_future()
        return future

    async def emit(self, action: str, payload: Any) -> None:
        """Receive a hook from a worker."""
        task_id = str(getattr(payload, "task_id", ""))
        if action == "task.started":
            self.started_order.append(task_id)
            return
        if action not in {"task.completed", "task.failed"}:
            return
        ok = action == "task.completed"
        name = str(getattr(payload, "task_name", ""))
        (self.done if ok else self.failed)[name] += 1
        future = self._waiting.get(task_id)
        if future is not None and not future.done():
            future.set_result(ok)
        for listener in self.listeners:
            listener(name, task_id, ok)


@dataclass(slots=True)
class _Backend:
    """The run's three queues and the services their pools share.

    `queue` takes the batch, the cron jobs and the workflow steps; `reports` the jobs
    that report progress (only its pool publishes to the progress tracker, so other
    jobs leave no progress records behind); `partners` is rate-limited.
    """

    queue: TaskQueueProtocol
    reports: TaskQueueProtocol
    partners: TaskQueueProtocol
    services: dict[str, TaskWorkerServices]
    result_store: Any
    tracker: Any
    dlq_backend: Any
    close: Callable[[], Awaitable[None]]

    @property
    def queues(self) -> list[TaskQueueProtocol]:
        return [self.queue, self.reports, self.partners]


async def _open(spec: TaskBackendSpec, run_id: str, events: JobEvents, timeout: float) -> _Backend:
    queue = open_queue(spec, f"lexigram-{run_id}")
    reports = open_queue(spec, f"lexigram-{run_id}-reports")
    partners = open_queue(spec, f"lexigram-{run_id}-partners")
    stores = open_stores(spec, "dlq_backend", "result_store", "progress_tracker")

    async def close() -> None:
        await stores.close()
        await close_quietly(queue, reports, partners)
        await release_backend(spec)

    try:
        await probe(queue, spec, timeout)
    except BaseException:
        await close()
        raise
    # `is None`, not `or`: a store is a third party's object, and one that defines
    # `__len__` (its record count) would be replaced whenever it is empty.
    dlq_storage = stores.dlq_backend if stores.dlq_backend is not None else InMemoryDLQBackend()
    result_store = stores.result_store if stores.result_store is not None else InMemoryResultStore()
    tracker = (
        stores.progress_tracker
        if stores.progress_tracker is not None
        else InMemoryProgressTracker()
    )
    limiter = QueueRateLimiter()
    limiter.add_limit(partners.queue_name, rate=PARTNER_RATE, per=1.0, burst=1)

    def services(on: TaskQueueProtocol, **extra: Any) -> TaskWorkerServices:
        dlq = PersistentDeadLetterQueue(backend=dlq_storage, queue=on)
        return TaskWorkerServices(
            dead_letter_queue=dlq, result_store=result_store, hooks=events, **extra
        )

    return _Backend(
        queue=queue,
        reports=reports,
        partners=partners,
        services={
            "main": services(queue),
            "reports": services(reports, progress_tracker=tracker),
            "partners": services(partners, rate_limiter=limiter.for_queue(partners.queue_name)),
        },
        result_store=result_store,
        tracker=tracker,
        dlq_backend=dlq_storage,
        close=close,
    )


def _worker_config(concurrency: int) -> TaskWorkerConfig:
    # Short backoff so that retries show up within the demo's few seconds.
    retry = RetryConfig(initial_delay=0.2, backoff_factor=2.0, max_delay=1.0, jitter=0.1)
    return TaskWorkerConfig(max_concurrent_tasks=concurrency, shutdown_timeout=5.0, retry=retry)


class Demo:
    """One demo run.

    Args:
        spec: The backend (its queue name is replaced by the run's own names).
        settings: How much work to do.
        view: The display.
        connect_timeout: Seconds to wait for the backend's first answer.
    """

    def __init__(
        self,
        spec: TaskBackendSpec,
        settings: DemoSettings,
        view: DemoView,
        connect_timeout: float = 5.0,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.view = view
        self.connect_timeout = connect_timeout
        self.run_id = f"demo-{uuid.uuid4().hex[:8]}"
        self.events = JobEvents()
        self.report = DemoReport(run_id=self.run_id)
        self._job_ids: list[str] = []
        self._priorities: dict[str, int] = {}
        self._cron_done = asyncio.Event()

    async def run(self, backend_label: str) -> DemoReport:
        """Run everything, clean up, and return the report."""
        started = time.monotonic()
        self.report.backend = backend_label
        backend = await _open(self.spec, self.run_id, self.events, self.connect_timeout)
        pools: list[WorkerPool] = []
        scheduler = TaskScheduler(check_interval=0.25)
        try:
            registry = build_registry()
            config = _worker_config(self.settings.concurrency)
            pools = [
                WorkerPool(
                    backend.queue,
                    registry,
                    size=self.settings.workers,
                    config=config,
                    services=backend.services["main"],
                ),
                WorkerPool(
                    backend.reports,
                    registry,
                    config=_worker_config(self.settings.reports),
                    services=backend.services["reports"],
                ),
                WorkerPool(
                    backend.partners,
                    registry,
                    config=_worker_config(4),
                    services=backend.services["partners"],
                ),
            ]
            batch = make_batch(self.settings.jobs, backend.queue.queue_name)
            self.report.batch_size = len(batch.jobs)
            self._priorities = {job.id: job.priority for job in batch.jobs}
            self.report.expected_dead_letters = batch.bounced + 1
            self.report.expected_retries = batch.flaky + 2 * batch.bounced
            self.view.stage(
                f"Queues {backend.queue.queue_name}, -reports and -partners (emptied afterwards)"
            )
            # Enqueued before the workers start, so the start order shows the priorities.
            self.view.stage(
                f"Enqueuing {len(batch.jobs)} jobs (high: charge_card, normal: send_receipt, "
                "low: resize_image)"
            )
            batch_done = await self._enqueue_all(backend.queue, batch.jobs)
            self.view.add_bar("batch", "batch jobs", len(batch.jobs))
            self._count_into_bar("batch", {job.id for job in batch.jobs})
            self.view.stage(f"Starting {self.settings.workers} workers on {backend_label}")
            batch_started = time.monotonic()
            for each in pools:
                await each.start()
            self._start_cron(scheduler)
            await scheduler.start_scheduler(backend.queue.enqueue)
            reports = asyncio.ensure_future(self._reports(backend))
            partners = asyncio.ensure_future(self._partners(backend))
            flows = asyncio.ensure_future(self._workflows(backend))
            await self._wait(batch_done)
            self.report.batch_seconds = time.monotonic() - batch_started
            await asyncio.gather(reports, partners, flows)
            await asyncio.wait_for(self._cron_done.wait(), timeout=self.settings.cron_fires + 5)
            await scheduler.stop_scheduler()
            self.view.stage("Draining the workers")
            await asyncio.gather(*(p.stop(drain=True, timeout=5.0) for p in pools))
            await self._collect(pools, backend)
        finally:
            await scheduler.stop_scheduler()
            await asyncio.gather(*(p.stop() for p in pools), return_exceptions=True)
            await self._cleanup(backend)
            await backend.close()
        self.report.elapsed = time.monotonic() - started
        return self.report

    # -- phases ------------------------------------------------------------------------

    async def _enqueue_all(self, queue: TaskQueueProtocol, jobs: list[Job]) -> list[Any]:
        futures = [self.events.expect(job.id) for job in jobs]
        self._job_ids.extend(job.id for job in jobs)
        for outcome in await enqueue_jobs(queue, jobs):
            if isinstance(outcome, Exception):
                raise outcome
        return futures

    async def _wait(self, futures: list[Any]) -> list[bool]:
        return list(await asyncio.wait_for(asyncio.gather(*futures), timeout=60.0))

    def _count_into_bar(self, key: str, ids: set[str]) -> None:
        finished = 0

        def listener(name: str, task_id: str, ok: bool) -> None:
            nonlocal finished
            del name, ok
            if task_id in ids:
                finished += 1
                self.view.update_bar(key, finished)

        self.events.listeners.append(listener)

    def _start_cron(self, scheduler: TaskScheduler) -> None:
        fires = self.settings.cron_fires
        self.view.add_bar("cron", "cron every second", fires)

        def listener(name: str, task_id: str, ok: bool) -> None:
            if name != "cleanup_sessions":
                return
            self._job_ids.append(task_id)
            self.report.cron_fires += 1
            self.view.update_bar("cron", min(self.report.cron_fires, fires))
            if self.report.cron_fires >= fires:
                self._cron_done.set()
                scheduler.disable_job(f"{self.run_id}-cleanup")

        self.events.listeners.append(listener)
        template = JobTemplate(name="cleanup_sessions", priority=int(Priority.HIGH))
        scheduler.schedule_job_sync(template, EVERY_SECOND, job_id=f"{self.run_id}-cleanup")

    async def _reports(self, backend: _Backend) -> None:
        names = [f"sales-{region}" for region in (*REGIONS, "global")][: self.settings.reports]
        jobs = [Job(name="build_report", args=(name, 16 + 4 * i)) for i, name in enumerate(names)]
        for job, name in zip(jobs, names, strict=True):
            self.view.add_bar(job.id, f"report {name}", int(job.args[1]))
        done = await self._enqueue_all(backend.reports, jobs)
        await asyncio.gather(
            *(self._follow(backend, job, name) for job, name in zip(jobs, names, strict=True))
        )
        await self._wait(done)

    async def _follow(self, backend: _Backend, job: Job, name: str) -> None:
        """Drive a progress bar from the progress tracker's live updates for `job`."""
        last: ProgressSnapshot | None = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_JOB_TIMEOUT):
                async for snapshot in backend.tracker.subscribe(job.id):
                    last = snapshot
                    self.view.update_bar(job.id, snapshot.current, snapshot.total or None)
        self.report.reports[name] = last.percent if last is not None else 0.0

    async def _partners(self, backend: _Backend) -> None:
        count = self.settings.partners
        self.view.add_bar("partners", f"rate-limited ({PARTNER_RATE}/s)", count)
        jobs = [Job(name="sync_partner", args=(f"partner-{n:02d}",)) for n in range(1, count + 1)]
        self._count_into_bar("partners", {job.id for job in jobs})
        started = time.monotonic()
        await self._wait(await self._enqueue_all(backend.partners, jobs))
        self.report.partner_jobs = count
        self.report.partner_seconds = time.monotonic() - started

    async def _run_job(self, backend: _Backend, name: str, *args: Any) -> Any:
        """Run one job on the queue and return its result (a workflow step's body)."""
        job = Job(name=name, args=args, max_retries=1)
        done = await self._enqueue_all(backend.queue, [job])
        if not (await self._wait(done))[0]:
            msg = f"job {job.id} ({name}) was dead-lettered"
            raise RuntimeError(msg)
        result = await backend.result_store.get(job.id)
        return None if result is None else result.data

    async def _workflows(self, backend: _Backend) -> None:
        run = self._run_job
        self.report.expected_results = expected_workflow_results()
        self.view.add_bar("flows", "workflows (chain, group, chord)", 3)

        def step(name: str, task: str) -> TaskStep:
            async def body(value: Any) -> Any:
                return await run(backend, task, value)

            return TaskStep(name, body)

        chain = TaskChain(
            [step("fetch", "fetch_orders"), step("sum", "sum_amounts"), step("usd", "to_usd")]
        )
        group = TaskGroup(
            [TaskStep(channel, _call(run, backend, "notify", channel)) for channel in CHANNELS]
        )
        chord = TaskChord(
            [TaskStep(region, _call(run, backend, "region_total", region)) for region in REGIONS],
            step("merge", "merge_totals"),
        )
        finished = 0
        finals: dict[str, Any] = {}

        async def execute(label: str, flow: Any, data: Any) -> None:
            nonlocal finished
            outcome = await flow.execute(data)
            result = outcome.unwrap() if outcome.is_ok() else outcome.unwrap_err().result
            status = result.status.value if result is not None else "failed"
            final = finals[label] = None if result is None else result.final_result
            self.report.results[label] = final
            self.report.workflows[label] = (status, describe_flow(label, final))
            finished += 1
            self.view.update_bar("flows", finished)

        await execute("chain", chain, "eu")
        total = finals["chain"]
        await asyncio.gather(execute("group", group, total), execute("chord", chord, None))

    # -- results and cleaning up -------------------------------------------------------

    async def _collect(self, pools: list[WorkerPool], backend: _Backend) -> None:
        for pool in pools:
            for worker in pool.workers:
                stats = worker.get_stats()
                self.report.attempts += stats.jobs_processed
                self.report.succeeded += stats.jobs_succeeded
                self.report.retried += stats.jobs_retried
        self.report.dead_letters = [
            (str(d.get("job_id")), str(d.get("job_name")), str(d.get("error")))
            for d in await self._own_dead_letters(backend)
        ]
        names = {
            int(Priority.HIGH): "high",
            int(Priority.NORMAL): "normal",
            int(Priority.LOW): "low",
        }
        ranks: dict[str, list[int]] = defaultdict(list)
        seen: set[str] = set()
        for task_id in self.events.started_order:
            priority = self._priorities.get(task_id)
            if priority is None or task_id in seen:
                continue  # not a batch job, or a retry (only first starts are ranked)
            seen.add(task_id)
            ranks[names.get(priority, str(priority))].append(len(seen))
        self.report.start_rank = {k: sum(v) / len(v) for k, v in ranks.items()}

    async def _own_dead_letters(self, backend: _Backend) -> list[dict[str, Any]]:
        queues = {queue.queue_name for queue in backend.queues}
        return [
            data
            for data in await backend.dlq_backend.list_all()
            if (data.get("job") or {}).get("queue_name") in queues
        ]

    async def _cleanup(self, backend: _Backend) -> None:
        """Empty the run's queues and delete its results and dead letters."""
        steps: list[Callable[[], Awaitable[Any]]] = [queue.clear for queue in backend.queues]
        steps += [functools.partial(backend.result_store.delete, i) for i in self._job_ids]
        try:
            own = await self._own_dead_letters(backend)
        except Exception:
            logger.debug("Listing the demo's dead letters failed.", exc_info=True)
            own = []
        steps += [functools.partial(backend.dlq_backend.remove, str(d.get("job_id"))) for d in own]
        # A broker whose queues are objects of their own (RabbitMQ) would keep one empty set
        # per demo run; a backend that can delete its queues says so with this method.
        for queue in backend.queues:
            delete_queues = getattr(queue, "delete_queues", None)
            if callable(delete_queues):
                steps.append(delete_queues)
        for step in steps:
            try:
                await step()
            except Exception:
                logger.debug("Demo clean-up step %r failed.", step, exc_info=True)


def _call(
    run: Callable[..., Awaitable[Any]], backend: _Backend, task: str, first: Any
) -> Callable[[Any], Awaitable[Any]]:
    """A step body that runs `task` with `first` (and the step's input, if any) as a job."""

    async def body(value: Any) -> Any:
        if value is None:
            return await run(backend, task, first)
        return await run(backend, task, first, value)

    return body
