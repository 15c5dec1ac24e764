from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    IdempotencyResultStatus,
    IdempotencyStoreProtocol,
    Job,
    QueueFullError,
    TaskValidationError,
)
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.execution import TaskWorkerServices, WorkerPool
from lexigram.tasks.idempotency import (
    IdempotencyManager,
    IdempotentTaskManager,
    InMemoryIdempotencyStore,
)
from lexigram.tasks.results import InMemoryResultStore

SUBMITTED = IdempotencyResultStatus.SUBMITTED
DUPLICATE = IdempotencyResultStatus.DUPLICATE
COMPLETED = IdempotencyResultStatus.COMPLETED


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


async def test_store_set_if_absent_get_update_delete_and_ttl():
    clock = FakeClock()
    store = InMemoryIdempotencyStore(clock=clock)
    assert isinstance(store, IdempotencyStoreProtocol)
    assert await store.set_if_absent("k", {"task_id": "a"}, ttl=10) is None
    assert await store.set_if_absent("k", {"task_id": "b"}, ttl=10) == {"task_id": "a"}
    clock.now += 5
    await store.update("k", {"task_id": "a", "status": "completed"}, ttl=10)
    clock.now += 9  # 14 s after the first write, 9 after the update: still live
    assert await store.get("k") == {"task_id": "a", "status": "completed"}
    clock.now += 1
    assert await store.get("k") is None
    assert len(store) == 0
    assert await store.set_if_absent("k", {"task_id": "c"}, ttl=10) is None
    assert await store.delete("k")
    assert await store.delete("k") is False


async def test_store_returns_copies():
    store = InMemoryIdempotencyStore()
    record: dict[str, Any] = {"task_id": "a", "result": {"n": 1}}
    await store.update("k", record, ttl=60)
    record["result"]["n"] = 2
    got = await store.get("k")
    assert got is not None
    assert got["result"] == {"n": 1}
    got["task_id"] = "mutated"
    assert (await store.get("k")) == {"task_id": "a", "result": {"n": 1}}


async def test_manager_submitted_duplicate_completed_and_expiry():
    clock = FakeClock()
    manager = IdempotencyManager(InMemoryIdempotencyStore(clock=clock), ttl=60)
    first = await manager.check_and_set("order-1", "job-a")
    assert (first.status, first.task_id, first.idempotency_key) == (SUBMITTED, "job-a", "order-1")
    second = await manager.check_and_set("order-1", "job-b")
    assert (second.status, second.task_id) == (DUPLICATE, "job-a")
    assert second.created_at == first.created_at
    await manager.mark_completed("order-1", {"charged": 42})
    third = await manager.check_and_set("order-1", "job-c")
    assert (third.status, third.task_id, third.result) == (COMPLETED, "job-a", {"charged": 42})
    known = await manager.get("order-1")
    assert known is not None
    assert known.status is COMPLETED
    clock.now += 61  # the key expires: the next submission runs again
    assert await manager.get("order-1") is None
    again = await manager.check_and_set("order-1", "job-d")
    assert (again.status, again.task_id) == (SUBMITTED, "job-d")


async def test_manager_concurrent_claims_have_one_winner():
    manager = IdempotencyManager()
    results = await asyncio.gather(*(manager.check_and_set("k", f"job-{i}") for i in range(50)))
    winners = [r for r in results if r.status is SUBMITTED]
    assert len(winners) == 1
    assert {r.task_id for r in results} == {winners[0].task_id}


async def test_manager_mark_completed_unknown_key_and_release():
    manager = IdempotencyManager()
    with pytest.raises(KeyError, match="submit the job"):
        await manager.mark_completed("nope", 1)
    await manager.check_and_set("k", "a")
    assert await manager.release("k")
    assert (await manager.check_and_set("k", "b")).status is SUBMITTED
    with pytest.raises(ValueError, match="negative"):
        IdempotencyManager(ttl=-1)


async def test_idempotent_task_manager_two_enqueues_one_execution_same_job_id():
    queue = MemoryTaskQueue(queue_name="billing")
    manager = IdempotentTaskManager(queue, IdempotencyManager())
    runs: list[int] = []
    done = asyncio.Event()

    async def charge(order: int) -> str:
        runs.append(order)
        done.set()
        return "charged"

    first = await manager.submit(Job(name="charge", args=(42,), idempotency_key="order-42"))
    second = await manager.submit(Job(name="charge", args=(42,), idempotency_key="order-42"))
    assert first.status is SUBMITTED
    assert second.status is DUPLICATE
    assert second.task_id == first.task_id
    assert await queue.get_task_count() == 1

    pool = WorkerPool(queue, {"charge": charge})
    await pool.start()
    try:
        await done.wait()
    finally:
        await pool.stop(drain=True)
    assert runs == [42]


async def test_queue_directly_two_enqueues_one_execution_same_job_id():
    queue = MemoryTaskQueue()
    runs: list[str] = []
    done = asyncio.Event()

    async def send(to: str) -> None:
        runs.append(to)
        done.set()

    first = (await queue.enqueue(Job(name="send", args=("a@b.c",), idempotency_key="k"))).unwrap()
    second = (await queue.enqueue(Job(name="send", args=("a@b.c",), idempotency_key="k"))).unwrap()
    assert first == second
    pool = WorkerPool(queue, {"send": send})
    await pool.start()
    try:
        await done.wait()
    finally:
        await pool.stop(drain=True)
    assert runs == ["a@b.c"]
    assert await queue.get_task_count() == 0


async def test_idempotent_task_manager_reuses_the_result_from_the_result_store():
    queue = MemoryTaskQueue()
    results = InMemoryResultStore()
    manager = IdempotentTaskManager(queue, IdempotencyManager(), result_store=results)
    done = asyncio.Event()

    async def square(n: int) -> int:
        done.set()
        return n * n

    first = await manager.submit(Job(name="square", args=(7,), idempotency_key="sq-7"))
    pool = WorkerPool(queue, {"square": square}, services=TaskWorkerServices(result_store=results))
    await pool.start()
    try:
        await done.wait()
        stored = await results.wait(first.task_id, timeout=5.0)
    finally:
        await pool.stop(drain=True)
    assert stored is not None
    assert stored.data == 49
    again = await manager.submit(Job(name="square", args=(7,), idempotency_key="sq-7"))
    assert (again.status, again.task_id, again.result) == (COMPLETED, first.task_id, 49)
    assert await queue.get_task_count() == 0  # nothing new was enqueued
    # explicit completion works too
    await manager.complete("sq-7", 50)
    assert (await manager.submit(Job(name="square", idempotency_key="sq-7"))).result == 50


async def test_idempotent_task_manager_adopts_the_queues_first_job():
    queue = MemoryTaskQueue()
    direct = (await queue.enqueue(Job(name="x", idempotency_key="shared"))).unwrap()
    manager = IdempotentTaskManager(queue)
    outcome = await manager.submit(Job(name="x", idempotency_key="shared"))
    assert (outcome.status, outcome.task_id) == (DUPLICATE, direct)
    again = await manager.submit(Job(name="x", idempotency_key="shared"))
    assert (again.status, again.task_id) == (DUPLICATE, direct)


async def test_idempotent_task_manager_requires_a_key_and_releases_on_queue_error():
    queue = MemoryTaskQueue(max_size=1)
    manager = IdempotentTaskManager(queue)
    with pytest.raises(TaskValidationError, match="no idempotency_key"):
        await manager.submit(Job(name="x"))
    await queue.enqueue(Job(name="filler"))
    with pytest.raises(QueueFullError):
        await manager.submit(Job(name="x", idempotency_key="k"))
    await queue.clear()
    # the failed submission did not keep the key
    assert (await manager.submit(Job(name="x", idempotency_key="k"))).status is SUBMITTED
