"""Services wired into a real `WorkerPool`: hooks, events, dashboard, metrics, progress."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from lexigram.contracts.tasks import Job, ProgressSnapshot, ProgressStatus
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import RetryConfig, TaskWorkerConfig
from lexigram.tasks.decorators import enqueue_job, enqueue_jobs, submit_job
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.events import (
    DomainEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
    TaskQueuedEvent,
    producer_events,
)
from lexigram.tasks.execution import TaskWorkerServices, WorkerPool
from lexigram.tasks.hooks import (
    HookRegistry,
    TaskCompletedHook,
    TaskEnqueuedHook,
    TaskFailedHook,
    TaskStartedHook,
)
from lexigram.tasks.observability import TaskDashboard, TaskMetricsCollector
from lexigram.tasks.progress import InMemoryProgressTracker, ProgressTracker


@pytest.fixture
def hooks() -> Iterator[HookRegistry]:
    """A hook registry that also sees this process's "queued" events."""
    registry = HookRegistry()
    remove = producer_events().add(registry)
    yield registry
    remove()


async def _run_until(pool: WorkerPool, done: asyncio.Event) -> None:
    await pool.start()
    try:
        async with asyncio.timeout(30):  # a safety net; the wait itself is event-driven
            await done.wait()
    finally:
        await pool.stop(drain=True)


async def test_queue_and_worker_fire_every_hook_and_event_with_ids(hooks: HookRegistry):
    seen: list[tuple[str, object]] = []

    def recorder(action: str) -> Callable[[object], None]:
        return lambda payload: seen.append((action, payload))

    for action in ("task.queued", "task.started", "task.completed", "task.failed"):
        hooks.add_observer(action, recorder(action))
    events: list[DomainEvent] = []
    hooks.event_bus.subscribe(DomainEvent, events.append)
    finished = asyncio.Event()
    hooks.event_bus.subscribe(
        TaskFailedEvent, lambda e: finished.set() if len(events) >= 4 else None
    )

    queue = MemoryTaskQueue(queue_name="mail")

    async def send(to: str) -> str:
        return f"sent to {to}"

    async def explode() -> None:
        msg = "smtp down"
        raise ConnectionError(msg)

    ok_id = (await enqueue_job(queue, Job(name="send", args=("a@b.c",)))).id
    bad_id = (await enqueue_job(queue, Job(name="explode", max_retries=0))).id
    pool = WorkerPool(queue, {"send": send, "explode": explode}, hooks=hooks)
    await _run_until(pool, finished)

    payloads = {(a, getattr(p, "task_id", None)): p for a, p in seen}
    assert payloads[("task.queued", ok_id)] == TaskEnqueuedHook(
        task_name="send", queue_name="mail", task_id=ok_id
    )
    assert payloads[("task.started", ok_id)] == TaskStartedHook(
        task_name="send", task_id=ok_id, worker_id="worker-1", queue_name="mail", attempt=1
    )
    completed = payloads[("task.completed", ok_id)]
    assert isinstance(completed, TaskCompletedHook)
    assert (completed.worker_id, completed.queue_name, completed.attempt) == ("worker-1", "mail", 1)
    assert completed.duration is not None
    failed = payloads[("task.failed", bad_id)]
    assert isinstance(failed, TaskFailedHook)
    assert failed.worker_id == "worker-1"
    assert "smtp down" in failed.reason
    assert ("task.failed", ok_id) not in payloads
    assert ("task.completed", bad_id) not in payloads

    by_type = {(type(e), getattr(e, "task_id", None)): e for e in events}
    assert by_type[(TaskQueuedEvent, ok_id)].queue_name == "mail"  # type: ignore[attr-defined]
    assert by_type[(TaskCompletedEvent, ok_id)].worker_id == "worker-1"  # type: ignore[attr-defined]
    assert "smtp down" in by_type[(TaskFailedEvent, bad_id)].error  # type: ignore[attr-defined]


async def test_failed_hook_fires_once_after_retries_are_exhausted(hooks: HookRegistry):
    started: list[str] = []
    failed: list[str] = []
    hooks.add_observer("task.started", lambda p: started.append(p.task_id))
    hooks.add_observer("task.failed", lambda p: failed.append(p.task_id))
    done = asyncio.Event()
    hooks.event_bus.subscribe(TaskFailedEvent, lambda e: done.set())
    queue = MemoryTaskQueue()

    async def flaky() -> None:
        msg = "always"
        raise RuntimeError(msg)

    job_id = (await queue.enqueue(Job(name="flaky", max_retries=2))).unwrap()
    fast_retries = TaskWorkerConfig(retry=RetryConfig(initial_delay=0.001, max_delay=0.001))
    pool = WorkerPool(queue, {"flaky": flaky}, hooks=hooks, config=fast_retries)
    await _run_until(pool, done)
    assert started == [job_id] * 3  # every attempt starts…
    assert failed == [job_id]  # …but only the final failure is reported


async def test_worker_feeds_the_dashboard_and_metrics_collector(hooks: HookRegistry):
    dashboard = TaskDashboard()
    metrics = TaskMetricsCollector()
    metrics.attach(hooks)
    queue = MemoryTaskQueue()
    done = asyncio.Event()
    outcomes = 0

    def count(_: object) -> None:
        nonlocal outcomes
        outcomes += 1
        if outcomes == 6:
            done.set()

    hooks.add_observer("task.completed", count)
    hooks.add_observer("task.failed", count)

    async def resize(n: int) -> int:
        return n

    def fail_sync() -> None:  # a sync handler: runs in the worker's thread pool
        msg = "bad image"
        raise ValueError(msg)

    for n in range(5):
        await enqueue_job(queue, Job(name="resize", args=(n,)))
    bad = (await enqueue_job(queue, Job(name="broken", max_retries=0))).id
    services = TaskWorkerServices(dashboard=dashboard)
    pool = WorkerPool(
        queue, {"resize": resize, "broken": fail_sync}, size=2, hooks=hooks, services=services
    )
    await _run_until(pool, done)

    summary = dashboard.get_summary()
    assert summary["total_executed"] == 6
    assert summary["total_failed"] == 1
    assert summary["task_types"] == 2
    stats = dashboard.get_per_task_stats()
    assert stats["resize"]["count"] == 5
    assert set(stats["resize"]["latency"]) == {
        "avg_ms",
        "min_ms",
        "max_ms",
        "p50_ms",
        "p95_ms",
        "p99_ms",
    }
    errors = dashboard.get_error_breakdown()["broken"]
    assert errors[0]["job_id"] == bad
    assert "bad image" in errors[0]["error"]
    recent = dashboard.get_recent_executions(task_name="resize")
    assert {r["worker_id"] for r in recent} <= {"worker-1", "worker-2"}
    snap = metrics.snapshot()
    assert snap["tasks"]["resize"] == {"queued": 5, "started": 5, "completed": 5}
    assert snap["tasks"]["broken"] == {"queued": 1, "started": 1, "failed": 1}


async def _collect(tracker: InMemoryProgressTracker, job_id: str) -> list[ProgressSnapshot]:
    return [snapshot async for snapshot in tracker.subscribe(job_id)]


async def test_handler_in_a_pool_reports_progress_to_early_and_late_subscribers():
    live = InMemoryProgressTracker()
    queue = MemoryTaskQueue()

    async def export(rows: int, progress: ProgressTracker) -> str:
        for i in range(1, rows + 1):
            await progress.update(i, rows, f"row {i}")
        return "exported"

    job_id = (await queue.enqueue(Job(name="export", args=(4,)))).unwrap()
    early = asyncio.create_task(_collect(live, job_id))
    await asyncio.sleep(0)  # let the subscriber register (one loop turn, not a timed wait)
    assert job_id in live._subscribers

    pool = WorkerPool(queue, {"export": export}, services=TaskWorkerServices(progress_tracker=live))
    await pool.start()
    try:
        async with asyncio.timeout(30):
            early_snaps = await early  # ends by itself on COMPLETE
    finally:
        await pool.stop(drain=True)

    assert [(s.current, s.total, s.status) for s in early_snaps] == [
        (1, 4, ProgressStatus.RUNNING),
        (2, 4, ProgressStatus.RUNNING),
        (3, 4, ProgressStatus.RUNNING),
        (4, 4, ProgressStatus.RUNNING),
        (4, 4, ProgressStatus.COMPLETE),
    ]
    assert [s.percent for s in early_snaps] == [25.0, 50.0, 75.0, 100.0, 100.0]
    assert early_snaps[1].message == "row 2"

    async with asyncio.timeout(5):
        late_snaps = await _collect(live, job_id)  # after completion: terminal snapshot once
    assert late_snaps == [early_snaps[-1]]
    assert (await live.get(job_id)) == early_snaps[-1]


async def test_a_failing_handler_ends_progress_subscriptions_with_failed():
    live = InMemoryProgressTracker()
    queue = MemoryTaskQueue()

    async def crunch(progress: ProgressTracker) -> None:
        await progress.update(1, 3, "first third")
        msg = "out of memory"
        raise MemoryError(msg)

    job_id = (await queue.enqueue(Job(name="crunch", max_retries=0))).unwrap()
    early = asyncio.create_task(_collect(live, job_id))
    await asyncio.sleep(0)
    pool = WorkerPool(queue, {"crunch": crunch}, services=TaskWorkerServices(progress_tracker=live))
    await pool.start()
    try:
        async with asyncio.timeout(30):
            snaps = await early
    finally:
        await pool.stop(drain=True)
    assert [s.status for s in snaps] == [ProgressStatus.RUNNING, ProgressStatus.FAILED]
    assert "out of memory" in snaps[-1].error
    late = await _collect(live, job_id)
    assert [s.status for s in late] == [ProgressStatus.FAILED]


async def test_every_producer_helper_reports_queued_once(hooks: HookRegistry):
    """`task.queued` comes from the core, once per accepted job, whatever the backend."""
    queued: list[str] = []
    hooks.add_observer("task.queued", lambda p: queued.append(p.task_id))
    queue = MemoryTaskQueue()
    first = await enqueue_job(queue, Job(name="a", idempotency_key="k"))
    duplicate = await enqueue_job(queue, Job(name="a", idempotency_key="k"))
    assert duplicate.id == first.id
    submitted = Job(name="b")
    assert (await submit_job(queue, submitted)).unwrap() == submitted.id
    bulk = await enqueue_jobs(queue, [Job(name="c"), Job(name="d")])
    ids = [job.id for job in bulk if isinstance(job, Job)]
    assert queued == [first.id, submitted.id, *ids]


async def test_a_dead_letter_put_back_is_reported_queued(hooks: HookRegistry):
    """A DLQ retry enqueues through the core's one door, so observers see the job again."""
    queued: list[str] = []
    hooks.add_observer("task.queued", lambda p: queued.append(p.task_id))
    dlq = DeadLetterQueue()
    job = Job(name="flaky")
    dlq.add(job, "boom", attempts=1)
    queue = MemoryTaskQueue()
    new_id = await dlq.requeue(job.id, queue)
    assert queued == [new_id]
