"""TaskWorker: running jobs, argument binding and injection, concurrency, stats."""

from __future__ import annotations

import asyncio
import copy
import textwrap
import threading
from pathlib import Path
from typing import Annotated, Any

import pytest

from lexigram.contracts.tasks import Job, JobResult, JobStatus, ProgressStatus
from lexigram.di import Container, Named
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import (
    INJECTED,
    HandlerRegistry,
    Reject,
    TaskWorker,
    TaskWorkerServices,
)
from lexigram.tasks.hooks import TaskCompletedHook, TaskStartedHook
from lexigram.tasks.idempotency import IdempotencyManager
from lexigram.tasks.middleware import (
    MetricsMiddleware,
    TaskExecutionContext,
    TaskMiddlewarePipeline,
    TimeoutMiddleware,
)
from lexigram.tasks.progress import InMemoryProgressStore, InMemoryProgressTracker, ProgressTracker
from lexigram.tasks.results import InMemoryResultStore
from lexigram.tasks.testing import HookRecorder


class Database:
    name = "db"


class Mailer:
    def __init__(self, label: str) -> None:
        self.label = label


class Service:
    pass


async def enqueue(queue: MemoryTaskQueue, *jobs: Job) -> None:
    for job in jobs:
        (await queue.enqueue(job)).unwrap()


def services_container() -> Container:
    """A container with a `Database` and a `Mailer` named "primary"."""
    container = Container()
    container.singleton(Database, Database())
    container.singleton(Mailer, Mailer("primary"), name="primary")
    return container


async def run_one(handler: Any, job: Job, **services: Any) -> JobResult:
    """Run `job` with `handler` on a fresh worker (services as keywords); its result."""
    queue = MemoryTaskQueue()
    store = InMemoryResultStore()
    worker = TaskWorker(
        "w1",
        queue,
        {job.name: handler},
        services=TaskWorkerServices(result_store=store, **services),
    )
    await enqueue(queue, job)
    await worker.start()
    result = await store.wait(job.id, timeout=5)
    await worker.stop()
    assert result is not None
    return result


async def test_worker_runs_a_job_stores_its_result_and_acks_it() -> None:
    queue = MemoryTaskQueue()
    store = InMemoryResultStore()
    hooks = HookRecorder()

    async def add(a: int, b: int) -> int:
        return a + b

    worker = TaskWorker(
        "w1", queue, {"add": add}, services=TaskWorkerServices(result_store=store, hooks=hooks)
    )
    job = Job(name="add", args=(2, 3))
    await enqueue(queue, job)
    await worker.start()
    result = await store.wait(job.id, timeout=5)
    await hooks.wait_until(lambda: hooks.ids("task.completed") == [job.id])
    await worker.stop()

    assert result is not None
    assert result.success
    assert result.data == 5
    assert (result.id, result.name, result.retry_count) == (job.id, "add", 0)
    assert await queue.get_job(job.id) is None  # acked: the queue forgot it
    assert await queue.count("tasks") == 0
    assert [name for name, _ in hooks.events] == ["task.started", "task.completed"]
    started = hooks.events[0][1]
    assert isinstance(started, TaskStartedHook)
    assert (started.task_name, started.task_id, started.worker_id, started.attempt) == (
        "add",
        job.id,
        "w1",
        1,
    )
    done = hooks.events[1][1]
    assert isinstance(done, TaskCompletedHook)
    assert (done.task_name, done.task_id, done.worker_id, done.queue_name) == (
        "add",
        job.id,
        "w1",
        "tasks",
    )
    assert done.attempt == 1
    assert done.duration is not None
    assert 0 <= done.duration < 5
    stats = worker.get_stats()
    assert (stats.jobs_processed, stats.jobs_succeeded, stats.jobs_failed) == (1, 1, 0)
    assert stats.uptime >= 0
    assert not worker.is_busy()
    assert not worker.running


async def test_worker_binds_positional_args_before_di_resolved_params() -> None:
    """Regression: positional arguments must never be dropped under DI."""
    seen: dict[str, Any] = {}

    async def handler(
        user_id: int,
        subject: str,
        db: Database,
        mailer: Annotated[Mailer, Named("primary")],
        *,
        urgent: bool = False,
    ) -> str:
        seen.update(user_id=user_id, subject=subject, db=db, mailer=mailer, urgent=urgent)
        return f"{user_id}:{subject}"

    job = Job(name="notify", args=(7, "hello"), kwargs={"urgent": True})
    result = await run_one(handler, job, container=services_container())

    assert result.success, result
    assert result.data == "7:hello"
    assert seen["user_id"] == 7
    assert seen["subject"] == "hello"
    assert isinstance(seen["db"], Database)
    assert seen["mailer"].label == "primary"
    assert seen["urgent"] is True


async def test_parameters_defaulting_to_injected_are_injected_as_if_they_had_no_default() -> None:
    seen: dict[str, Any] = {}

    async def handler(
        user_id: int,
        db: Database = INJECTED,
        tracker: ProgressTracker = INJECTED,
        *,
        mailer: Annotated[Mailer, Named("primary")] = INJECTED,
        job: Job = INJECTED,
    ) -> int:
        seen.update(db=db, tracker=tracker, mailer=mailer, job=job)
        return user_id

    job = Job(name="notify", args=(7,))
    result = await run_one(
        handler, job, container=services_container(), progress_store=InMemoryProgressStore()
    )

    assert result.success, result
    assert isinstance(seen["db"], Database)
    assert seen["tracker"].job_id == job.id
    assert seen["mailer"].label == "primary"
    assert seen["job"].id == job.id


async def test_a_direct_call_that_leaves_an_injected_parameter_out_says_so() -> None:
    async def resize(name: str, progress: ProgressTracker = INJECTED) -> str:
        await progress.update(1, 1)
        return name

    with pytest.raises(AttributeError, match="filled by the worker that runs the job"):
        await resize("cat.png")
    assert repr(INJECTED) == "INJECTED"
    assert copy.deepcopy(INJECTED) is INJECTED  # the worker recognises it by identity


async def test_an_injected_parameter_without_a_container_says_what_is_missing() -> None:
    async def handler(db: Database = INJECTED) -> None:
        return None

    result = await run_one(handler, Job(name="needs_db", max_retries=0))

    assert not result.success
    assert "no DI container is configured" in (result.error or "")


async def test_worker_injects_tracker_context_and_job() -> None:
    queue = MemoryTaskQueue()
    progress = InMemoryProgressStore()
    store = InMemoryResultStore()
    got: dict[str, Any] = {}

    async def handler(n: int, tracker: ProgressTracker, ctx: TaskExecutionContext, job: Job) -> int:
        got.update(tracker=tracker, ctx=ctx, job=job)
        for i in range(1, n + 1):
            await tracker.update(i, n, f"step {i}")
        return n

    worker = TaskWorker(
        "w1",
        queue,
        {"steps": handler},
        services=TaskWorkerServices(progress_store=progress, result_store=store),
    )
    job = Job(name="steps", args=(4,))
    await enqueue(queue, job)
    await worker.start()
    assert await store.wait(job.id, timeout=5) is not None
    await worker.stop()

    assert got["job"].id == job.id  # the delivered copy of the job
    assert got["ctx"].job is got["job"]
    assert got["tracker"].job_id == job.id
    info = await progress.get(job.id)
    assert info is not None
    assert (info.current, info.total, info.percentage) == (4, 4, 100.0)
    assert info.metadata["status"] == "complete"
    assert await progress.list_active() == []


async def test_worker_progress_reaches_live_subscribers() -> None:
    queue = MemoryTaskQueue()
    live = InMemoryProgressTracker()
    release = asyncio.Event()

    async def report(tracker: ProgressTracker) -> None:
        await tracker.update(1, 2, "half")
        await release.wait()
        await tracker.update(2, 2, "all")

    worker = TaskWorker(
        "w1", queue, {"report": report}, services=TaskWorkerServices(progress_tracker=live)
    )
    job = Job(name="report")
    await enqueue(queue, job)
    early: list[Any] = []

    async def subscribe_early() -> None:
        early.extend([snap async for snap in live.subscribe(job.id)])

    watcher = asyncio.create_task(subscribe_early())
    await worker.start()
    await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(watcher, 5)
    await worker.stop()

    assert early[-1].status is ProgressStatus.COMPLETE
    assert [s.message for s in early if s.status is ProgressStatus.RUNNING][-1] == "all"
    late = [snap async for snap in live.subscribe(job.id)]
    assert len(late) == 1
    assert late[0].status is ProgressStatus.COMPLETE
    assert late[0].percent == 100.0


async def test_a_job_without_progress_writes_none_and_readers_fall_back_to_its_result() -> None:
    queue = MemoryTaskQueue()
    store = InMemoryResultStore()
    live = InMemoryProgressTracker(results=store)
    plain = InMemoryProgressTracker()
    hooks = HookRecorder()

    async def quiet() -> None:
        return None

    async def broken() -> None:
        reason = "no"
        raise Reject(reason)

    worker = TaskWorker(
        "w1",
        queue,
        {"quiet": quiet, "broken": broken},
        services=TaskWorkerServices(progress_tracker=live, result_store=store, hooks=hooks),
    )
    job, bad = Job(name="quiet"), Job(name="broken")
    follower = asyncio.ensure_future(_collect(live.subscribe(job.id)))
    await asyncio.sleep(0)
    await enqueue(queue, job)
    await enqueue(queue, bad)
    await worker.start()
    await hooks.wait_until(
        lambda: job.id in hooks.ids("task.completed") and bad.id in hooks.ids("task.failed")
    )
    await worker.stop()
    assert await plain.get(job.id) is None  # nothing was published for it
    snapshot = await live.get(job.id)
    assert snapshot is not None
    assert snapshot.status is ProgressStatus.COMPLETE
    assert snapshot.percent == 100.0
    followed = await asyncio.wait_for(follower, 5)
    assert [s.status for s in followed] == [ProgressStatus.COMPLETE]
    failed = await live.get(bad.id)
    assert failed is not None
    assert failed.status is ProgressStatus.FAILED
    assert "no" in failed.error


async def _collect(snapshots: Any) -> list[Any]:
    return [snapshot async for snapshot in snapshots]


async def test_worker_runs_sync_handlers_in_a_thread() -> None:
    queue = MemoryTaskQueue()
    store = InMemoryResultStore()

    def blocking(x: int) -> str:
        return f"{x}@{threading.current_thread().name}"

    worker = TaskWorker(
        "w1", queue, {"blocking": blocking}, services=TaskWorkerServices(result_store=store)
    )
    job = Job(name="blocking", args=(1,))
    await enqueue(queue, job)
    await worker.start()
    result = await store.wait(job.id, timeout=5)
    await worker.stop()
    assert result is not None
    assert result.success
    assert result.data.startswith("1@lexigram-w1")


async def test_worker_sees_handlers_registered_after_start() -> None:
    queue = MemoryTaskQueue()
    store = InMemoryResultStore()
    registry = HandlerRegistry()
    worker = TaskWorker("w1", queue, registry, services=TaskWorkerServices(result_store=store))
    await worker.start()

    @registry.register("late")
    async def late() -> str:
        return "seen"

    job = Job(name="late")
    await enqueue(queue, job)
    result = await store.wait(job.id, timeout=5)
    await worker.stop()
    assert result is not None
    assert result.data == "seen"


async def test_worker_never_takes_more_jobs_than_free_slots() -> None:
    queue = MemoryTaskQueue()
    release = asyncio.Event()
    hooks = HookRecorder()

    async def hold() -> None:
        await release.wait()

    worker = TaskWorker(
        "w1",
        queue,
        {"hold": hold},
        TaskWorkerConfig(max_concurrent_tasks=3),
        TaskWorkerServices(hooks=hooks),
    )
    await enqueue(queue, *(Job(name="hold") for _ in range(10)))
    await worker.start()
    await hooks.wait_until(lambda: len(hooks.ids("task.started")) == 3)
    assert await queue.count("tasks", JobStatus.RUNNING) == 3
    assert await queue.count("tasks", JobStatus.PENDING) == 7
    assert worker.is_busy()
    assert worker.in_flight == 3
    assert worker.current_job is not None
    release.set()
    await hooks.wait_until(lambda: len(hooks.ids("task.completed")) == 10)
    await worker.stop()
    assert await queue.count("tasks") == 0


async def test_worker_middleware_gets_resolved_arguments() -> None:
    container = Container()
    container.singleton(Service, Service())
    queue = MemoryTaskQueue()
    store = InMemoryResultStore()
    metrics = MetricsMiddleware()
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(TimeoutMiddleware(default_timeout=5))
    pipeline.add(metrics)

    async def handler(x: int, service: Service) -> str:
        return f"{x}-{type(service).__name__}"

    def sync_handler(y: int) -> int:
        return y * 2

    worker = TaskWorker(
        "w1",
        queue,
        {"h": handler, "s": sync_handler},
        services=TaskWorkerServices(container=container, result_store=store),
        middleware_pipeline=pipeline,
    )
    first, second = Job(name="h", args=(3,)), Job(name="s", args=(21,))
    await enqueue(queue, first, second)
    await worker.start()
    one = await store.wait(first.id, timeout=5)
    two = await store.wait(second.id, timeout=5)
    await worker.stop()
    assert one is not None
    assert one.data == "3-Service"
    assert two is not None
    assert two.data == 42
    stats = metrics.get_stats()
    assert stats["total_executed"] == 2
    assert set(stats["per_task"]) == {"h", "s"}


async def test_worker_get_progress_tracker_needs_a_store() -> None:
    queue = MemoryTaskQueue()
    assert TaskWorker("w1", queue, {}).get_progress_tracker("x") is None
    store = InMemoryProgressStore()
    worker = TaskWorker("w2", queue, {}, services=TaskWorkerServices(progress_store=store))
    tracker = worker.get_progress_tracker("job-1")
    assert tracker is not None
    await tracker.update(1, 4)
    info = await store.get("job-1")
    assert info is not None
    assert info.percentage == 25.0


async def test_a_running_jobs_tracker_is_its_own_with_a_store_that_looks_empty() -> None:
    class CountingStore(InMemoryProgressStore):
        def __len__(self) -> int:  # a store that counts its records is falsy when empty
            return 0

    queue = MemoryTaskQueue()
    seen: asyncio.Queue[bool] = asyncio.Queue()

    async def report(job: Job, progress: ProgressTracker) -> None:
        await seen.put(worker.get_progress_tracker(job.id) is progress)

    worker = TaskWorker(
        "w", queue, {"report": report}, services=TaskWorkerServices(progress_store=CountingStore())
    )
    await queue.enqueue(Job(name="report"))
    await worker.start()
    try:
        assert await asyncio.wait_for(seen.get(), 10) is True
    finally:
        await worker.stop(drain=True)


async def test_worker_consumes_the_rate_limiter_tokens_it_uses() -> None:
    class CountingLimiter:
        def __init__(self) -> None:
            self.acquired = 0
            self.tried = 0

        async def acquire(self, tokens: int = 1) -> None:
            self.acquired += tokens

        async def try_acquire(self, tokens: int = 1) -> bool:
            self.tried += 1
            if self.tried % 2:
                self.acquired += tokens
                return True
            return False

    queue = MemoryTaskQueue()
    hooks = HookRecorder()
    limiter = CountingLimiter()

    async def noop() -> None:
        return None

    worker = TaskWorker(
        "w1",
        queue,
        {"noop": noop},
        TaskWorkerConfig(max_concurrent_tasks=8),
        TaskWorkerServices(hooks=hooks, rate_limiter=limiter),
    )
    await enqueue(queue, *(Job(name="noop") for _ in range(20)))
    await worker.start()
    await hooks.wait_until(lambda: len(hooks.ids("task.completed")) == 20)
    await worker.stop()
    # Every job started holds one token; at most one batch of tokens is left unused.
    assert 20 <= limiter.acquired <= 20 + 8


async def test_worker_start_twice_and_stop_twice_are_harmless() -> None:
    worker = TaskWorker("w1", MemoryTaskQueue(), {})
    await worker.start()
    await worker.start()
    await worker.stop()
    await worker.stop()
    assert "w1" in repr(worker)


async def test_worker_records_results_under_idempotency_keys() -> None:
    queue = MemoryTaskQueue()
    manager = IdempotencyManager()
    hooks = HookRecorder()

    async def charge(amount: int) -> dict[str, int]:
        return {"charged": amount}

    async def refuse() -> None:
        msg = "card declined"
        raise RuntimeError(msg)

    worker = TaskWorker(
        "w1",
        queue,
        {"charge": charge, "refuse": refuse},
        services=TaskWorkerServices(idempotency_manager=manager, hooks=hooks),
    )
    paid = Job(name="charge", args=(5,), idempotency_key="order-1")
    declined = Job(name="refuse", idempotency_key="order-2", max_retries=0)
    unclaimed = Job(name="charge", args=(1,), idempotency_key="never-claimed")
    await manager.check_and_set("order-1", paid.id)
    await manager.check_and_set("order-2", declined.id)
    await enqueue(queue, paid, declined, unclaimed)
    await worker.start()
    await hooks.wait_until(
        lambda: len(hooks.ids("task.completed")) == 2 and len(hooks.ids("task.failed")) == 1
    )
    await worker.stop()
    done = await manager.get("order-1")
    assert done is not None
    assert done.result == {"charged": 5}
    assert await manager.get("order-2") is None  # freed: a new submission runs again
    assert await manager.get("never-claimed") is None


@pytest.mark.slow
def test_worker_services_take_any_store_of_the_contracts(tmp_path: Path) -> None:
    # Backends' stores (RedisResultStore, ...) implement the contracts' protocols without
    # subclassing core's ABCs: they type-check as services, and a partial store does not.
    from mypy import api as mypy_api

    sample = tmp_path / "sample.py"
    sample.write_text(
        textwrap.dedent(
            """
            from lexigram.contracts.tasks import JobResult, ProgressInfo
            from lexigram.tasks.execution import TaskWorkerServices

            class Results:
                async def store(self, job_id: str, result: JobResult) -> None:
                    return None

                async def get(self, job_id: str) -> JobResult | None:
                    return None

                async def delete(self, job_id: str) -> bool:
                    return False

                async def wait(
                    self, job_id: str, *, timeout: float = 30.0, poll_interval: float = 0.5
                ) -> JobResult | None:
                    return None

                async def cleanup_expired(self) -> int:
                    return 0

                async def get_completed(self, limit: int | None = None) -> list[JobResult]:
                    return []

                async def get_failed(self, limit: int | None = None) -> list[JobResult]:
                    return []

            class Progress:
                async def save(self, info: ProgressInfo) -> None:
                    return None

                async def get(self, job_id: str) -> ProgressInfo | None:
                    return None

                async def delete(self, job_id: str) -> None:
                    return None

                async def list_active(self) -> list[ProgressInfo]:
                    return []

            class Partial:
                async def store(self, job_id: str, result: JobResult) -> None:
                    return None

            TaskWorkerServices(result_store=Results(), progress_store=Progress())
            TaskWorkerServices(result_store=Partial())
            """
        )
    )
    out, _, status = mypy_api.run([str(sample), "--strict", "--no-error-summary"])
    assert status == 1
    assert 'incompatible type "Partial"; expected "ResultStoreProtocol | None"' in out
    assert out.count("error:") == 1, out
