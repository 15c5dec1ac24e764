"""A worker leases short jobs ahead of its free slots (`prefetch_window`), never long ones.

A job held ahead starts the moment a slot frees, in its turn, without a round trip to the
queue; its lease is kept like a running job's; stopping gives it back unrun; cancelling it
ends it unrun. Long jobs (the average run time over the window) are left in the queue for
other workers, and a window of 0 turns holding off.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from lexigram.contracts.tasks import CancelOutcome, Job, JobStatus
from lexigram.tasks import JobHandle
from lexigram.tasks._give_back import times_given_back
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.execution._prefetch import Prefetch
from lexigram.tasks.results import InMemoryResultStore

WARM_UPS = 30  # jobs run before the gated one, so that the worker has a rate to go by
GATED = 1000


class Bench:
    """A one-slot worker with a ticking task, a quick one, one that waits for a gate and a
    slow one."""

    def __init__(self, window: float, *, lease: float = 30.0) -> None:
        self.queue = MemoryTaskQueue(visibility_timeout=lease)
        self.results = InMemoryResultStore()
        self.ran: list[int] = []
        self.gate = asyncio.Event()
        ran, gate = self.ran, self.gate

        async def tick(n: int) -> int:
            ran.append(n)
            await asyncio.sleep(0.01)
            return n

        async def quick(n: int) -> int:
            ran.append(n)
            return n

        async def gated(n: int) -> int:
            ran.append(n)
            await gate.wait()
            return n

        async def slow(n: int) -> int:
            ran.append(n)
            await asyncio.sleep(0.3)
            return n

        self.worker = TaskWorker(
            "w1",
            self.queue,
            {"tick": tick, "quick": quick, "gated": gated, "slow": slow},
            TaskWorkerConfig(max_concurrent_tasks=1, poll_interval=0.02, prefetch_window=window),
            TaskWorkerServices(result_store=self.results),
        )

    async def send(self, name: str, n: int) -> JobHandle[Any]:
        job = Job(name=name, args=(n,))
        (await self.queue.enqueue(job)).unwrap()
        return JobHandle(self.queue, job.id, result_store=self.results)

    def held(self) -> int:
        """Jobs the worker holds that have not started."""
        return self.worker.in_flight - len(self.worker.running_jobs())

    async def waiting(self) -> int:
        return await self.queue.count(self.queue.queue_name, JobStatus.PENDING)

    async def gated_behind(self, warm: str = "tick", count: int = WARM_UPS) -> list[JobHandle[Any]]:
        """`count` `warm` jobs, then a gated job and two quick ones behind it."""
        for n in range(count):
            await self.send(warm, n)
        handles = [
            await self.send("gated", GATED),
            await self.send("quick", GATED + 1),
            await self.send("quick", GATED + 2),
        ]
        await self.worker.start()
        await _until(lambda: GATED in self.ran, timeout=10)
        return handles


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.005)


@pytest.fixture
async def short() -> AsyncIterator[Bench]:
    bench = Bench(window=0.2)  # 30 jobs of 10 ms take longer: one window measured
    yield bench
    bench.gate.set()
    await bench.worker.stop()


async def test_a_short_job_is_held_ahead_and_starts_in_its_turn(short: Bench) -> None:
    handles = await short.gated_behind()
    await _until(lambda: short.held() == 1)
    # One slot: the gated job runs, the next is held, the last stays in the queue.
    assert short.ran == [*range(WARM_UPS), GATED]
    assert await short.waiting() == 1
    short.gate.set()
    assert [await h.result(timeout=5) for h in handles] == [GATED, GATED + 1, GATED + 2]
    assert short.ran[WARM_UPS:] == [GATED, GATED + 1, GATED + 2]
    assert short.held() == 0


async def test_stopping_gives_a_held_job_back_unrun(short: Bench) -> None:
    await short.gated_behind()
    await _until(lambda: short.held() == 1)
    await short.worker.stop()
    # The gated job was stopped and requeued; the held one goes back without a run.
    assert short.ran[WARM_UPS:] == [GATED]
    assert await short.waiting() == 3
    assert short.worker.in_flight == 0
    again = await short.queue.dequeue_batch(3, timeout=0)
    assert sorted(job.args[0] for job in again) == [GATED, GATED + 1, GATED + 2]
    held = next(job for job in again if job.args[0] == GATED + 1)
    assert held.retry_count == 0
    # Given back unrun, counted as such (no crash for max_deliveries); the gated job's
    # run was interrupted, so its delivery counts.
    assert times_given_back(held) == 1
    interrupted = next(job for job in again if job.args[0] == GATED)
    assert times_given_back(interrupted) == 0


async def test_cancelling_a_held_job_ends_it_unrun(short: Bench) -> None:
    handles = await short.gated_behind()
    await _until(lambda: short.held() == 1)
    assert await handles[1].cancel() is CancelOutcome.STOPPING
    await _until(lambda: short.worker.stats.jobs_cancelled == 1)
    assert await handles[1].status() is JobStatus.CANCELLED
    assert short.ran[WARM_UPS:] == [GATED]  # the gated job still runs
    short.gate.set()
    assert await handles[2].result(timeout=5) == GATED + 2
    assert short.ran[WARM_UPS:] == [GATED, GATED + 2]


async def test_a_held_job_keeps_its_lease_while_it_waits() -> None:
    bench = Bench(window=0.2, lease=0.3)
    try:
        handles = await bench.gated_behind()
        await _until(lambda: bench.held() == 1)
        await asyncio.sleep(1.0)  # over three leases
        assert bench.held() == 1
        # Nothing to take for another worker but the job behind: the held job's lease
        # was renewed.
        other = await bench.queue.dequeue_batch(5, timeout=0)
        assert [job.args[0] for job in other] == [GATED + 2]
        await bench.queue.nack(other[0].id, requeue=True, lease_token=other[0].lease_token)
        bench.gate.set()
        assert [await h.result(timeout=5) for h in handles] == [GATED, GATED + 1, GATED + 2]
        assert bench.ran[WARM_UPS:] == [GATED, GATED + 1, GATED + 2]
    finally:
        bench.gate.set()
        await bench.worker.stop()


@pytest.mark.parametrize(
    ("window", "warm", "count"),
    [
        pytest.param(0.1, "slow", 2, id="long-jobs"),  # one starts every 0.3 s: none in 0.1
        pytest.param(0.0, "tick", WARM_UPS, id="window-of-zero"),
    ],
)
async def test_nothing_is_held(window: float, warm: str, count: int) -> None:
    bench = Bench(window=window)
    try:
        handles = await bench.gated_behind(warm=warm, count=count)
        await asyncio.sleep(0.2)
        assert bench.held() == 0
        assert await bench.waiting() == 2
        bench.gate.set()
        assert [await h.result(timeout=5) for h in handles] == [GATED, GATED + 1, GATED + 2]
    finally:
        bench.gate.set()
        await bench.worker.stop()


async def test_many_short_jobs_run_once_each_in_order() -> None:
    queue = MemoryTaskQueue()
    ran: list[int] = []

    async def tick(n: int) -> None:
        ran.append(n)
        await asyncio.sleep(0.001)

    worker = TaskWorker(
        "w1", queue, {"tick": tick}, TaskWorkerConfig(max_concurrent_tasks=1, poll_interval=0.02)
    )
    for n in range(200):
        (await queue.enqueue(Job(name="tick", args=(n,)))).unwrap()
    await worker.start()
    try:
        await _until(lambda: len(ran) == 200)
    finally:
        await worker.stop(drain=True)
    assert ran == list(range(200))
    assert worker.stats.jobs_succeeded == 200


def test_the_budget_is_what_the_last_window_finished() -> None:
    prefetch = Prefetch({}, slots=10, window=0.5)
    assert prefetch.budget(100.0, 0) == 0  # the first window has no rate yet
    assert prefetch.budget(100.2, 5) == 0  # still inside it
    assert prefetch.budget(100.3, 8) == 0  # fewer jobs than slots: still no rate
    assert prefetch.budget(100.5, 8) == 8  # 8 jobs in 0.5 s: 8 start within 0.5 s
    assert prefetch.budget(101.0, 48) == 10  # 40 in the window, at most the slots
    assert prefetch.budget(101.5, 48) == 0  # none finished: hold none
    assert prefetch.budget(101.6, 68) == 10  # a slot's worth (20 > 10) in 0.1 s: no wait
    assert prefetch.wanted(3, 101.65, 68) == 3 + 10  # free slots, and ten ahead
    assert Prefetch({}, slots=10, window=0.0).wanted(3, 200.0, 100) == 3


def _holding_every_slot(
    queue: MemoryTaskQueue,
    handlers: dict[str, Any],
    slots: int,
    results: InMemoryResultStore | None = None,
) -> TaskWorker:
    """A worker whose window is so long that its budget is every slot once it has finished
    as many jobs as it has slots (`Prefetch.budget`)."""
    return TaskWorker(
        "w1",
        queue,
        handlers,
        TaskWorkerConfig(max_concurrent_tasks=slots, poll_interval=0.02, prefetch_window=3600.0),
        TaskWorkerServices(result_store=results),
    )


class LookAheadTrap(MemoryTaskQueue):
    """A queue whose first look-ahead lease (the worker full, a job held ahead) is a round
    trip lasting as long as `during(worker)` runs, which then finds nothing.

    The in-memory queue answers without yielding, so a slot can never free during its
    `dequeue_batch`; a networked queue's round trip can take as long as a job's end.
    """

    def __init__(self, during: Callable[[TaskWorker], Awaitable[None]]) -> None:
        super().__init__()
        self.worker: TaskWorker | None = None
        self.during = during
        self.held_then: int | None = None  # jobs held ahead when the trapped call came

    async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Job]:
        worker = self.worker
        if (
            worker is not None
            and self.held_then is None
            and worker._free_slots() <= 0
            and worker._ahead
        ):
            self.held_then = len(worker._ahead)
            await self.during(worker)
            return []
        return await super().dequeue_batch(max_jobs, timeout=timeout)


def _quick_and_gated(ran: list[int], gate: asyncio.Event) -> dict[str, Any]:
    """Handlers: ``quick`` returns at once, ``gated`` once `gate` is set."""

    async def quick(n: int) -> int:
        ran.append(n)
        return n

    async def gated(n: int) -> int:
        ran.append(n)
        await gate.wait()
        return n

    return {"quick": quick, "gated": gated}


async def test_a_slot_that_frees_while_looking_ahead_starts_the_held_job() -> None:
    # Regression (6a2ecfd): the loop cleared the event the ends had set during the
    # look-ahead call, then waited for a next end that never came, the job held unrun.
    release = asyncio.Event()  # the running jobs' handlers wait for it

    async def every_job_ends(worker: TaskWorker) -> None:
        release.set()
        # Every running job's run ends, its slot freed (`_forget` runs in its task).
        await asyncio.wait(worker._tasks())
        assert worker._free_slots() == worker.config.max_concurrent_tasks

    queue = LookAheadTrap(every_job_ends)
    results = InMemoryResultStore()
    ran: list[int] = []
    # Full, with one job held, the worker looks ahead for one more (`Prefetch.wanted`).
    worker = _holding_every_slot(queue, _quick_and_gated(ran, release), 2, results)
    queue.worker = worker

    async def send(name: str, n: int) -> JobHandle[Any]:
        job = Job(name=name, args=(n,))
        (await queue.enqueue(job)).unwrap()
        return JobHandle(queue, job.id, result_store=results)

    handles = [await send("quick", 0), await send("quick", 1)]
    await worker.start()
    try:
        await _until(lambda: worker._prefetch.rate > 0)  # a rate: a budget of 2
        # The gated jobs hold both slots until the look-ahead call; the quick one is held.
        handles += [await send("gated", 2), await send("gated", 3), await send("quick", 4)]
        try:
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(handle.result(timeout=None) for handle in handles)), timeout=10
            )
        except TimeoutError:
            pytest.fail(f"the worker stalled: ran {sorted(ran)}, {worker.in_flight} job(s) held")
    finally:
        release.set()
        await worker.stop()
    assert queue.held_then == 1
    assert outcomes == [0, 1, 2, 3, 4]
    assert sorted(ran) == [0, 1, 2, 3, 4]  # each job ran once
    assert worker.stats.jobs_succeeded == 5
    assert worker.in_flight == 0


async def test_a_held_job_starts_in_a_freed_slot_while_the_loop_waits_for_the_queue() -> None:
    # The consume loop may be in a look-ahead round trip when a slot frees: the held job
    # starts at once, not when that trip ends (on PostgreSQL slots stayed empty 3-4 ms).
    asked, answer = asyncio.Event(), asyncio.Event()

    async def until_answered(worker: TaskWorker) -> None:
        asked.set()
        await answer.wait()

    queue = LookAheadTrap(until_answered)
    gate = asyncio.Event()
    ran: list[int] = []
    worker = _holding_every_slot(queue, _quick_and_gated(ran, gate), 2)
    queue.worker = worker
    for n in (0, 1):
        (await queue.enqueue(Job(name="quick", args=(n,)))).unwrap()
    await worker.start()
    try:
        await _until(lambda: worker._prefetch.rate > 0)  # a rate: a budget of 2
        for job in (Job(name="gated", args=(2,)), Job(name="gated", args=(3,))):
            (await queue.enqueue(job)).unwrap()
        (await queue.enqueue(Job(name="quick", args=(4,)))).unwrap()
        await asyncio.wait_for(asked.wait(), timeout=5)  # full, job 4 held
        assert 4 not in ran
        gate.set()
        await _until(lambda: 4 in ran)
        assert not answer.is_set()  # the look-ahead call is still out
    finally:
        answer.set()
        gate.set()
        await worker.stop()
    assert queue.held_then == 1
    assert sorted(ran) == [0, 1, 2, 3, 4]
    assert worker.stats.jobs_succeeded == 5


_SEEN_BY: contextvars.ContextVar[str] = contextvars.ContextVar("seen_by")


async def test_a_held_job_does_not_inherit_the_context_of_the_job_it_follows() -> None:
    # A held job starts from the task of the job whose slot it takes, in the worker's
    # context: never in a copy of the one its predecessor's handler changed.
    queue = MemoryTaskQueue()
    gate = asyncio.Event()
    seen: dict[int, str | None] = {}

    async def setter(n: int) -> int:
        _SEEN_BY.set(f"job {n}")
        await gate.wait()
        return n

    async def reader(n: int) -> int:
        seen[n] = _SEEN_BY.get(None)
        return n

    worker = _holding_every_slot(queue, {"setter": setter, "reader": reader}, 1)
    (await queue.enqueue(Job(name="reader", args=(0,)))).unwrap()
    await worker.start()
    try:
        await _until(lambda: worker._prefetch.rate > 0)  # a rate: one job held ahead
        for job in (Job(name="setter", args=(1,)), Job(name="reader", args=(2,))):
            (await queue.enqueue(job)).unwrap()
        await _until(lambda: worker.in_flight == 2)  # the setter runs, the reader is held
        gate.set()
        await _until(lambda: 2 in seen)
    finally:
        gate.set()
        await worker.stop()
    assert seen == {0: None, 2: None}
