"""TaskWorker leases and lifecycle: heartbeats, lost leases, drain, cancel-and-nack, stop."""

from __future__ import annotations

import asyncio
import gc
import time

from lexigram.contracts.tasks import Job, JobStatus
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.testing import HookRecorder


class Gate:
    """Handlers that block until the test opens the gate, counting who got in."""

    def __init__(self) -> None:
        self.entered = 0
        self.cancelled = 0
        self.opened = asyncio.Event()
        self._entered = asyncio.Event()

    async def handler(self) -> str:
        self.entered += 1
        self._entered.set()
        try:
            await self.opened.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "done"

    async def wait_entered(self, count: int) -> None:
        async with asyncio.timeout(5):
            while self.entered < count:
                self._entered.clear()
                await self._entered.wait()


async def test_worker_heartbeat_keeps_a_long_job_leased() -> None:
    """A job that runs several lease lengths is extended, never redelivered."""
    queue = MemoryTaskQueue(visibility_timeout=0.15)
    hooks = HookRecorder()
    runs = 0

    async def long_job() -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.6)  # the workload: four lease lengths

    worker = TaskWorker("w1", queue, {"long": long_job}, services=TaskWorkerServices(hooks=hooks))
    job = Job(name="long")
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.completed"))
    await worker.stop()
    assert runs == 1
    assert job.delivery_count == 1
    assert await queue.count("tasks") == 0


async def test_worker_cancels_a_deleted_in_flight_job_and_never_sees_it_again() -> None:
    queue = MemoryTaskQueue(visibility_timeout=0.15)
    gate = Gate()
    worker = TaskWorker("w1", queue, {"gated": gate.handler})
    job = Job(name="gated")
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await gate.wait_entered(1)
    entry = worker._in_flight[job.id]
    running = entry.task
    assert running is not None
    assert await queue.delete_job(job.id)
    await asyncio.wait_for(asyncio.wait({running}), 5)  # the heartbeat notices and cancels
    assert not worker.is_busy()
    assert gate.cancelled == 1
    # Its handler was cancelled, but the attempt's outcome is "lost", as its event says.
    assert (worker.stats.jobs_lost, worker.stats.jobs_cancelled) == (1, 0)
    assert worker.stats.jobs_processed == 1
    assert entry.job.status is JobStatus.CANCELLED
    # Not acked, not requeued: the queue does not hold it and will not deliver it.
    assert await queue.get_job(job.id) is None
    assert await queue.dequeue_batch(1, timeout=0.3) == []
    assert gate.entered == 1
    await worker.stop()


async def test_worker_graceful_drain_lets_running_jobs_finish() -> None:
    queue = MemoryTaskQueue()
    gate = Gate()
    hooks = HookRecorder()
    worker = TaskWorker(
        "w1",
        queue,
        {"gated": gate.handler},
        TaskWorkerConfig(max_concurrent_tasks=3),
        TaskWorkerServices(hooks=hooks),
    )
    jobs = [Job(name="gated") for _ in range(5)]
    for job in jobs:
        (await queue.enqueue(job)).unwrap()
    await worker.start()
    await gate.wait_entered(3)
    stopping = asyncio.create_task(worker.stop(drain=True, timeout=5))
    await asyncio.sleep(0.05)  # give stop() time to (wrongly) cancel; it must wait instead
    assert not stopping.done()
    assert gate.cancelled == 0
    gate.opened.set()
    await asyncio.wait_for(stopping, 5)
    assert len(hooks.ids("task.completed")) == 3
    assert gate.entered == 3  # no new job was taken while draining
    assert await queue.count("tasks", JobStatus.PENDING) == 2
    assert await queue.count("tasks", JobStatus.RUNNING) == 0


async def test_worker_stop_without_drain_cancels_and_requeues_running_jobs() -> None:
    queue = MemoryTaskQueue()
    gate = Gate()
    worker = TaskWorker(
        "w1", queue, {"gated": gate.handler}, TaskWorkerConfig(max_concurrent_tasks=4)
    )
    jobs = [Job(name="gated") for _ in range(4)]
    for job in jobs:
        (await queue.enqueue(job)).unwrap()
    await worker.start()
    await gate.wait_entered(4)
    await worker.stop()
    assert gate.cancelled == 4
    assert await queue.count("tasks", JobStatus.PENDING) == 4
    assert await queue.count("tasks", JobStatus.RUNNING) == 0
    for job in jobs:
        waiting = await queue.get_job(job.id)
        assert waiting is not None
        assert (waiting.status, waiting.delivery_count) == (JobStatus.PENDING, 1)

    # Another worker picks them up (their second delivery) and finishes them.
    hooks = HookRecorder()
    second = TaskWorker(
        "w2",
        queue,
        {"gated": gate.handler},
        TaskWorkerConfig(max_concurrent_tasks=4),
        TaskWorkerServices(hooks=hooks),
    )
    await second.start()
    await gate.wait_entered(8)
    assert {entry.job.delivery_count for entry in second._in_flight.values()} == {2}
    gate.opened.set()
    await hooks.wait_until(lambda: len(hooks.ids("task.completed")) == 4)
    await second.stop()
    assert await queue.count("tasks") == 0


async def test_worker_drain_timeout_cancels_and_requeues_the_rest() -> None:
    queue = MemoryTaskQueue()
    gate = Gate()
    worker = TaskWorker("w1", queue, {"gated": gate.handler})
    job = Job(name="gated")
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await gate.wait_entered(1)
    await worker.stop(drain=True, timeout=0.05)
    assert gate.cancelled == 1
    assert await queue.count("tasks", JobStatus.PENDING) == 1


async def test_worker_stop_is_prompt_while_idle() -> None:
    """The idle wait is woken by stop(), not waited out (poll_interval is long here)."""
    queue = MemoryTaskQueue()
    worker = TaskWorker("w1", queue, {}, TaskWorkerConfig(poll_interval=60.0))
    await worker.start()
    await asyncio.sleep(0.01)  # let the loop reach its idle wait
    async with asyncio.timeout(1.0):
        await worker.stop()
    assert not worker.running


async def test_worker_wakes_for_a_job_enqueued_while_idle() -> None:
    queue = MemoryTaskQueue()
    hooks = HookRecorder()

    async def noop() -> None:
        return None

    worker = TaskWorker(
        "w1",
        queue,
        {"noop": noop},
        TaskWorkerConfig(poll_interval=60.0),
        TaskWorkerServices(hooks=hooks),
    )
    await worker.start()
    await asyncio.sleep(0.01)
    job = Job(name="noop")
    (await queue.enqueue(job)).unwrap()
    async with asyncio.timeout(1.0):  # far below poll_interval: the queue woke the worker
        await hooks.wait_until(lambda: job.id in hooks.ids("task.completed"))
    await worker.stop()


async def test_worker_nacks_jobs_on_outside_cancellation() -> None:
    queue = MemoryTaskQueue()
    gate = Gate()
    worker = TaskWorker("w1", queue, {"gated": gate.handler})
    job = Job(name="gated")
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await gate.wait_entered(1)
    entry = worker._in_flight[job.id]
    task = entry.task
    assert task is not None
    task.cancel()  # e.g. the event loop shutting down
    await asyncio.wait({task})
    assert task.cancelled()
    assert entry.task is None  # the finished entry let go of its task (no reference cycle)
    # Nacked with requeue: the (still running) worker takes it again.
    await gate.wait_entered(2)
    assert worker._in_flight[job.id].job.delivery_count == 2
    gate.opened.set()
    await worker.stop(drain=True)
    assert await queue.count("tasks") == 0


async def test_worker_timeout_clock_starts_when_the_job_starts() -> None:
    """A job leased while the loop is blocked still gets its whole timeout to run."""
    queue = MemoryTaskQueue()
    hooks = HookRecorder()

    async def quick() -> str:
        return "ran"

    worker = TaskWorker("w1", queue, {"quick": quick}, services=TaskWorkerServices(hooks=hooks))
    job = Job(name="quick", timeout=0.01)
    (await queue.enqueue(job)).unwrap()
    leased = await queue.dequeue()
    assert leased is not None
    worker._start_job(leased)
    time.sleep(0.05)  # noqa: ASYNC251 - deliberately block the loop past the job's timeout
    await hooks.wait_until(lambda: job.id in hooks.ids("task.completed"))
    assert worker.stats.jobs_succeeded == 1


async def test_worker_releases_a_job_stopped_before_its_task_started() -> None:
    queue = MemoryTaskQueue()
    worker = TaskWorker("w1", queue, {"quick": lambda: None})
    job = Job(name="quick")
    (await queue.enqueue(job)).unwrap()
    leased = await queue.dequeue()
    assert leased is not None
    worker._start_job(leased)
    entry = worker._in_flight[job.id]
    worker._interrupt(entry, "stop")  # what stop() does to every running job
    task = entry.task
    assert task is not None
    await asyncio.wait({task})
    assert not task.cancelled()
    assert not worker.is_busy()
    assert await queue.count("tasks", JobStatus.PENDING) == 1


async def test_worker_heartbeat_reclaims_a_job_cancelled_from_outside_before_start() -> None:
    queue = MemoryTaskQueue()
    worker = TaskWorker("w1", queue, {"quick": lambda: None})
    job = Job(name="quick")
    (await queue.enqueue(job)).unwrap()
    leased = await queue.dequeue()
    assert leased is not None
    worker._start_job(leased)
    entry = worker._in_flight[job.id]
    assert entry.task is not None
    entry.task.cancel()  # before its first step: the body never runs
    await asyncio.wait({entry.task})
    assert worker.is_busy()  # the orphan still holds a slot...
    await worker._heartbeat.renew(10.0)  # ...until the next heartbeat reclaims it
    assert not worker.is_busy()
    assert await queue.count("tasks", JobStatus.PENDING) == 1


async def test_finished_jobs_leave_no_reference_cycle_behind() -> None:
    """A finished job is freed by reference counting: the cycle collector has nothing to do.

    A cycle per job (task -> context -> entry -> task) made the collector run hundreds of
    times per drain and walk every waiting job each time: the default path's hidden cost.
    """
    queue = MemoryTaskQueue()
    await queue.enqueue_many([Job(name="quick") for _ in range(50)])

    ran = 0
    all_ran = asyncio.Event()

    async def quick() -> str:
        nonlocal ran
        ran += 1
        if ran == 50:
            all_ran.set()
        return "ok"

    worker = TaskWorker("w1", queue, {"quick": quick})
    gc.collect()
    gc.disable()
    try:
        await worker.start()
        async with asyncio.timeout(5):
            await all_ran.wait()
        await worker.stop(drain=True)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [type(obj).__name__ for obj in gc.garbage if isinstance(obj, Job | asyncio.Task)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
