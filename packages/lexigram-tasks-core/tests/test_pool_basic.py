"""WorkerPool: start/stop, worker ids, scaling, shared DLQ, stats."""

from __future__ import annotations

from typing import Any

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.execution import HandlerRegistry, TaskWorkerServices, WorkerPool
from lexigram.tasks.results import InMemoryResultStore
from lexigram.tasks.testing import HookRecorder


async def noop() -> None:
    return None


async def test_pool_starts_named_workers_and_processes_jobs() -> None:
    queue = MemoryTaskQueue()
    hooks = HookRecorder()
    pool = WorkerPool(queue, {"noop": noop}, size=3, hooks=hooks)
    await pool.start()
    assert [w.worker_id for w in pool.workers] == ["worker-1", "worker-2", "worker-3"]
    assert all(w.running for w in pool.workers)
    for _ in range(30):
        (await queue.enqueue(Job(name="noop"))).unwrap()
    await hooks.wait_until(lambda: len(hooks.ids("task.completed")) == 30)
    stats = pool.get_pool_stats()
    assert stats["pool_size"] == 3
    assert stats["active_workers"] == 3
    assert stats["total_jobs_processed"] == 30
    assert stats["total_jobs_succeeded"] == 30
    assert stats["total_jobs_failed"] == 0
    assert stats["average_processing_time"] >= 0.0
    assert sum(s.jobs_processed for s in pool.get_worker_stats()) == 30
    await pool.stop()
    assert not pool.running
    assert not any(w.running for w in pool.workers)


async def test_pool_creates_a_shared_dlq_when_none_is_given() -> None:
    queue = MemoryTaskQueue()
    hooks = HookRecorder()

    async def bad() -> None:
        msg = "broken"
        raise RuntimeError(msg)

    pool = WorkerPool(queue, {"bad": bad}, size=2, hooks=hooks)
    assert isinstance(pool.dead_letter_queue, DeadLetterQueue)
    await pool.start()
    assert all(w.dlq is pool.dead_letter_queue for w in pool.workers)
    job = Job(name="bad", max_retries=0)
    (await queue.enqueue(job)).unwrap()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await pool.stop()
    record = pool.dead_letter_queue.get(job.id)
    assert record is not None
    assert record.error == "RuntimeError: broken"


async def test_pool_uses_the_given_dlq_container_and_services() -> None:
    dlq = DeadLetterQueue()
    store = InMemoryResultStore()
    container = object()
    pool = WorkerPool(
        MemoryTaskQueue(),
        {},
        size=1,
        dead_letter_queue=dlq,
        container=container,
        services=TaskWorkerServices(result_store=store),
        config=TaskWorkerConfig(max_concurrent_tasks=2),
    )
    await pool.start()
    worker = pool.workers[0]
    assert worker.dlq is dlq
    assert worker.result_store is store
    assert worker.services.container is container
    assert worker.config.max_concurrent_tasks == 2
    await pool.stop()


async def test_pool_scale_up_and_down() -> None:
    queue = MemoryTaskQueue()
    hooks = HookRecorder()
    pool = WorkerPool(queue, {"noop": noop}, size=2, hooks=hooks)
    await pool.start()
    await pool.scale_to(5)
    assert len(pool.workers) == 5
    assert pool.size == 5
    assert all(w.running for w in pool.workers)
    removed = pool.workers[2:]
    await pool.scale_to(2)
    assert len(pool.workers) == 2
    assert not any(w.running for w in removed)
    (await queue.enqueue(Job(name="noop"))).unwrap()
    await hooks.wait_until(lambda: len(hooks.ids("task.completed")) == 1)
    await pool.scale_to(0)
    assert pool.get_pool_stats()["pool_size"] == 0
    await pool.stop()


async def test_pool_scale_before_start_only_builds_workers() -> None:
    pool = WorkerPool(MemoryTaskQueue(), {}, size=1)
    await pool.scale_to(3)
    assert len(pool.workers) == 3
    assert not any(w.running for w in pool.workers)
    await pool.start()
    assert all(w.running for w in pool.workers)
    await pool.stop()


async def test_pool_sees_handlers_registered_after_start() -> None:
    queue = MemoryTaskQueue()
    registry = HandlerRegistry()
    store = InMemoryResultStore()
    pool = WorkerPool(queue, registry, size=2, services=TaskWorkerServices(result_store=store))
    await pool.start()
    registry.register("late", lambda: "late result")
    assert set(pool.refresh_handlers()) == {"late"}
    job = Job(name="late")
    (await queue.enqueue(job)).unwrap()
    result = await store.wait(job.id, timeout=5)
    await pool.stop()
    assert result is not None
    assert result.data == "late result"


async def test_pool_refresh_handlers_with_a_dict() -> None:
    handlers: dict[str, Any] = {"noop": noop}
    pool = WorkerPool(MemoryTaskQueue(), handlers)
    handlers["other"] = noop
    assert set(pool.refresh_handlers()) == {"noop", "other"}
    assert "WorkerPool" in repr(pool)
