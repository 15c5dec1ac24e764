"""The published reference's examples for the core services, as written (stand-ins added).

The names the examples call but do not define (`sync_user_data`, `process_resource`,
`some_coroutine`, `task_manager`) are defined here as small recording stand-ins.
"""

from __future__ import annotations

import asyncio

from lexigram.tasks import (
    BackgroundTaskManager,
    GlobalRateLimiter,
    LockManager,
    OnErrorPolicy,
    QueueRateLimiter,
    ScheduledWorker,
    distributed_lock,
    unique_task,
)

calls: list[object] = []


async def sync_user_data(user_id: object) -> None:
    calls.append(("sync", user_id))


async def process_resource(resource_id: int) -> None:
    calls.append(("process", resource_id))


async def some_coroutine() -> None:
    calls.append("some_coroutine")


async def test_reference_background_task_manager_example():
    manager = BackgroundTaskManager()
    task = manager.track(some_coroutine())
    # … later …
    await manager.shutdown(timeout=30.0)

    await asyncio.wait({task})
    assert task.done()
    assert manager.pending_count == 0


async def test_reference_distributed_lock_protocol_example():
    calls.clear()
    lock_manager = LockManager()
    async with lock_manager.acquire("user:123:sync", timeout=60):
        await sync_user_data(user_id=123)

    assert calls == [("sync", 123)]
    assert lock_manager.held_keys() == []


async def test_reference_unique_task_example():
    calls.clear()
    lock_manager = LockManager()

    @unique_task(
        lock_manager=lock_manager, key_func=lambda user_id: f"sync_user:{user_id}", timeout=3600
    )
    async def sync_user(user_id: str):
        await sync_user_data(user_id)

    await sync_user("u-1")
    assert calls == [("sync", "u-1")]


async def test_reference_distributed_lock_function_example():
    calls.clear()
    manager = LockManager()  # Should be from DI container
    async with distributed_lock("resource:123", lock_manager=manager):
        await process_resource(123)

    assert calls == [("process", 123)]


async def test_reference_global_rate_limiter_example():
    limiter = GlobalRateLimiter(rate=100, per=1.0)  # 100 tasks / sec
    await limiter.acquire()

    assert limiter.available_tokens < 100


async def test_reference_queue_rate_limiter_example():
    limiter = QueueRateLimiter()
    limiter.add_limit("emails", rate=5, per=1.0)  # 5 / sec
    limiter.add_limit("reports", rate=1, per=60.0)  # 1 / min

    await limiter.acquire("emails")

    assert await limiter.try_acquire("reports")
    assert not await limiter.try_acquire("reports")


async def test_reference_scheduled_worker_example():
    # The reference's MyWorker shows only the class-level defaults; the docstring above it
    # says "Subclass and implement run_cycle", so the subclass implements it here.
    ran = asyncio.Event()

    class MyWorker(ScheduledWorker):
        interval_seconds = 60.0
        initial_delay_seconds = 0.0
        max_jitter_seconds = 0.0
        on_error_policy = OnErrorPolicy.LOG_AND_CONTINUE

        async def run_cycle(self) -> None:
            ran.set()

    task_manager = BackgroundTaskManager()
    worker = MyWorker(
        task_manager=task_manager,
        interval_seconds=30.0,
        on_error_policy=OnErrorPolicy.BACKOFF,
    )

    assert worker.effective_interval == 30.0
    assert worker.effective_policy is OnErrorPolicy.BACKOFF
    await worker.start()
    await ran.wait()
    await worker.stop()
    assert not worker.is_running
