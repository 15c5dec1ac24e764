from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from lexigram.contracts.tasks import LockProtocol
from lexigram.tasks import Job, MemoryTaskQueue
from lexigram.tasks.concurrency import (
    DistributedLockProtocol,
    InMemoryLock,
    LockManager,
    UniqueTask,
    distributed_lock,
    unique_task,
)
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.testing import HookRecorder


async def _wait_until_done(tasks: Sequence[asyncio.Task[Any]], count: int) -> None:
    """Wait (event-driven) until at least `count` of `tasks` are done."""
    pending = {t for t in tasks if not t.done()}
    while len(tasks) - len(pending) < count:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)


async def test_unique_task_skip_if_locked_runs_body_once_for_100_concurrent_calls():
    manager = LockManager()
    started = asyncio.Event()
    release = asyncio.Event()
    runs = 0

    @unique_task(lock_manager=manager, key_func=lambda user_id: f"sync_user:{user_id}")
    async def sync_user(user_id: str) -> str:
        nonlocal runs
        runs += 1
        started.set()
        await release.wait()
        return f"synced {user_id}"

    tasks = [asyncio.create_task(sync_user("42")) for _ in range(100)]
    await started.wait()
    await _wait_until_done(tasks, 99)  # every other attempt was skipped while held
    release.set()
    results = await asyncio.gather(*tasks)
    assert runs == 1
    assert results.count("synced 42") == 1
    assert results.count(None) == 99
    assert manager.held_keys() == []


async def test_unique_task_wait_mode_runs_all_100_one_at_a_time():
    manager = LockManager()
    running = 0
    max_running = 0
    ran = 0

    @unique_task(
        lock_manager=manager,
        key_func=lambda user_id: f"sync_user:{user_id}",
        timeout=30,
        skip_if_locked=False,
    )
    async def sync_user(user_id: str) -> None:
        nonlocal running, max_running, ran
        running += 1
        max_running = max(max_running, running)
        for _ in range(3):  # give every other caller a chance to barge in
            await asyncio.sleep(0)
        running -= 1
        ran += 1

    await asyncio.gather(*(sync_user("42") for _ in range(100)))
    assert ran == 100
    assert max_running == 1


async def test_unique_task_different_keys_run_concurrently():
    manager = LockManager()
    both_in = asyncio.Event()
    inside = 0

    @UniqueTask(manager, key_func=lambda n: f"k:{n}")
    async def work(n: int) -> int:
        nonlocal inside
        inside += 1
        if inside == 2:
            both_in.set()
        await both_in.wait()
        return n

    assert list(await asyncio.gather(work(1), work(2))) == [1, 2]


async def test_unique_task_sync_function_runs_in_a_thread_and_releases():
    manager = LockManager()
    guarded = UniqueTask(manager, key_func=lambda x: "k")(lambda x: x * 2)
    assert await guarded(21) == 42
    assert await guarded(1) == 2
    assert manager.held_keys() == []


async def test_unique_task_releases_the_lock_when_the_body_raises():
    manager = LockManager()

    @unique_task(lock_manager=manager, key_func=lambda: "boom")
    async def fails() -> None:
        msg = "boom"
        raise RuntimeError(msg)

    with pytest.raises(RuntimeError):
        await fails()
    assert manager.held_keys() == []


async def test_distributed_lock_without_manager_excludes_same_key():
    order: list[str] = []
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with distributed_lock("shared"):
            order.append("first-in")
            first_in.set()
            await release_first.wait()
            order.append("first-out")

    async def second() -> None:
        await first_in.wait()
        async with distributed_lock("shared"):
            order.append("second-in")

    t1 = asyncio.create_task(first())
    t2 = asyncio.create_task(second())
    await first_in.wait()
    await asyncio.sleep(0)
    release_first.set()
    await asyncio.gather(t1, t2)
    assert order == ["first-in", "first-out", "second-in"]


async def test_in_memory_lock_try_acquire_and_release():
    manager = LockManager()
    a = manager.acquire("k", timeout=10)
    b = manager.acquire("k", timeout=10)
    assert isinstance(a, InMemoryLock)
    assert isinstance(a, LockProtocol)
    assert isinstance(a, DistributedLockProtocol)  # a real protocol of every lock
    # Calling it builds the in-process lock (the BuildsDefault metaclass, at run time); mypy
    # sees a protocol, which cannot be called.
    built = DistributedLockProtocol("other", 5)  # type: ignore[misc, call-arg]
    assert isinstance(built, InMemoryLock)
    assert built.key == "other"
    assert await a.try_acquire()
    assert await a.acquire() is False  # already held (by this object)
    assert await b.try_acquire() is False
    assert manager.held_keys() == ["k"]
    await a.release()
    assert await b.acquire()
    await b.release()
    await b.release()  # releasing twice is harmless


async def test_in_memory_lock_acquire_wait_times_out_when_held():
    manager = LockManager()
    holder = manager.acquire("k", timeout=30)
    assert await holder.try_acquire()
    waiter = manager.acquire("k", timeout=30)
    assert await waiter.acquire_wait(timeout=0.01) is False
    await holder.release()
    assert await waiter.acquire_wait(timeout=0.01) is True
    await waiter.release()


async def test_in_memory_lock_waiter_wakes_on_release():
    manager = LockManager()
    holder = manager.acquire("k", timeout=30)
    assert await holder.try_acquire()
    waiters = [asyncio.create_task(manager.acquire("k", 30).acquire_wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    await holder.release()
    await _wait_until_done(waiters, 1)
    assert sum(w.done() for w in waiters) == 1  # exactly one new holder
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


def _held(lock: InMemoryLock) -> bool:
    """What `lock.is_held` says now.

    Read through a call: mypy keeps an assert's narrowing of the attribute across the calls
    that change it, and would take the opposite assert that follows for unreachable.
    """
    return lock.is_held


async def test_in_memory_lock_auto_releases_after_timeout(caplog: pytest.LogCaptureFixture):
    manager = LockManager()
    holder = manager.acquire("k", timeout=0.05)
    waiter = manager.acquire("k", timeout=30)
    assert isinstance(holder, InMemoryLock)
    assert isinstance(waiter, InMemoryLock)
    assert await holder.try_acquire()
    assert _held(holder)
    # The holder never releases: the waiter gets the key once the hold expires.
    assert await waiter.acquire_wait(timeout=5.0)
    assert not _held(holder)
    with caplog.at_level(logging.WARNING, logger="lexigram.tasks.concurrency._locking"):
        await holder.release()  # late release: warns, must not free the new holder's key
    assert "longer than its timeout" in caplog.text
    assert _held(waiter)
    assert await manager.acquire("k", 30).try_acquire() is False
    await waiter.release()


async def test_in_memory_lock_standalone_and_validation():
    lock = InMemoryLock("solo", timeout=1.0)
    async with lock:
        assert _held(lock)
    assert not _held(lock)
    with pytest.raises(ValueError, match="not a positive number of seconds"):
        InMemoryLock("bad", timeout=0)
    with pytest.raises(ValueError, match="not a positive number of seconds"):
        LockManager().acquire("bad", timeout=-1)
    # An infinite hold never expired in memory and SQLite, and Redis and PostgreSQL
    # refused it each in its own words: every lock is refused it the same way.
    for timeout in (float("inf"), float("nan"), 1e30):
        with pytest.raises(ValueError, match="up to a year"):
            InMemoryLock("bad", timeout=timeout)
        with pytest.raises(ValueError, match="up to a year"):
            LockManager(backend=_RecordingBackend()).acquire("bad", timeout=timeout)


class _RecordingBackendLock:
    def __init__(self, key: str, timeout: float, log: list[str]) -> None:
        self.key, self.timeout, self.log = key, timeout, log

    async def acquire(self) -> bool:
        self.log.append(f"acquire {self.key}")
        return True

    async def try_acquire(self) -> bool:
        self.log.append(f"try {self.key}")
        return True

    async def acquire_wait(self, timeout: float | None = None) -> bool:
        self.log.append(f"wait {self.key}")
        return True

    async def release(self) -> None:
        self.log.append(f"release {self.key}")

    async def __aenter__(self) -> _RecordingBackendLock:
        await self.acquire_wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


class _RecordingBackend:
    def __init__(self) -> None:
        self.log: list[str] = []

    def acquire(self, key: str, timeout: float = 60.0) -> _RecordingBackendLock:
        return _RecordingBackendLock(key, timeout, self.log)


async def test_lock_manager_delegates_to_a_backend_lock_manager():
    backend = _RecordingBackend()
    manager = LockManager(backend=backend)
    assert manager.backend is backend

    @unique_task(lock_manager=manager, key_func=lambda: "job")
    async def job() -> str:
        return "ran"

    assert await job() == "ran"
    async with manager.acquire("res", timeout=5):
        pass
    assert backend.log == ["try job", "release job", "wait res", "release res"]


async def _run_once_through_a_worker(queue: MemoryTaskQueue, handler: Any) -> None:
    hooks = HookRecorder()
    worker = TaskWorker("w1", queue, {"sync": handler}, services=TaskWorkerServices(hooks=hooks))
    await worker.start()
    try:
        await hooks.wait_until(lambda: bool(hooks.ids("task.completed")))
    finally:
        await worker.stop()


async def test_unique_task_redelivered_after_its_worker_died_waits_for_its_own_key():
    """The job's first worker died holding the key: the redelivery runs once the hold ends."""
    queue = MemoryTaskQueue(visibility_timeout=0.1)
    manager = LockManager()
    calls: list[str] = []

    @unique_task(lock_manager=manager, key_func=lambda user: f"sync:{user}", timeout=1.5)
    async def sync_user(user: str) -> str:
        calls.append(user)
        return user

    (await queue.enqueue(Job(name="sync", args=("ann",)))).unwrap()
    # The first delivery: its worker takes the key and dies (no ack, no release).
    first = await queue.dequeue()
    assert first is not None
    assert first.delivery_count == 1
    assert await manager.acquire("sync:ann", 1.5).try_acquire()

    await _run_once_through_a_worker(queue, sync_user)
    assert calls == ["ann"]


async def test_unique_task_first_delivery_still_skips_a_held_key():
    queue = MemoryTaskQueue()
    manager = LockManager()
    calls: list[str] = []

    @unique_task(lock_manager=manager, key_func=lambda user: f"sync:{user}", timeout=30)
    async def sync_user(user: str) -> str:
        calls.append(user)
        return user

    assert await manager.acquire("sync:bob", 30).try_acquire()
    (await queue.enqueue(Job(name="sync", args=("bob",)))).unwrap()
    await _run_once_through_a_worker(queue, sync_user)
    assert calls == []
