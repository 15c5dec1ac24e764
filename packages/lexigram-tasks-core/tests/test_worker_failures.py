"""TaskWorker failure paths: retries with backoff, DLQ, every exception type, timeouts.

Each test ends with the worker still alive (it runs another job) and the queue empty or
holding exactly what the test expects: a failure never leaves a job unacked.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    POISON_JOB_NAME,
    FailureRecord,
    Job,
    JobStatus,
    make_poison_job,
)
from lexigram.tasks._presence import worker_identity
from lexigram.tasks.admin import dead_letter_row
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import RetryConfig, TaskWorkerConfig
from lexigram.tasks.decorators import task
from lexigram.tasks.dlq import DeadLetterQueue, PersistentDeadLetterQueue
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.results import InMemoryResultStore
from lexigram.tasks.testing import HookRecorder

FAST_RETRY = RetryConfig(initial_delay=0.01, backoff_factor=2.0, max_delay=1.0, jitter=0.0)


class RecordingQueue(MemoryTaskQueue):
    """A memory queue that records the delay of every retry_later call."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry_delays: list[float] = []

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> bool:
        self.retry_delays.append(delay)
        return await super().retry_later(task, delay=delay)


class CustomBaseError(BaseException):
    """A BaseException subclass that is not an Exception."""


async def alive(worker: TaskWorker, queue: MemoryTaskQueue, hooks: HookRecorder) -> None:
    """Prove the worker still runs jobs: enqueue a probe and wait for it to complete."""
    probe = Job(name="probe")
    (await queue.enqueue(probe)).unwrap()
    await hooks.wait_until(lambda: probe.id in hooks.ids("task.completed"))


async def probe() -> str:
    return "ok"


def make_worker(
    queue: MemoryTaskQueue, handlers: dict[str, Any], **services: Any
) -> tuple[TaskWorker, HookRecorder, DeadLetterQueue]:
    hooks = HookRecorder()
    dlq = DeadLetterQueue()
    config = TaskWorkerConfig(retry=FAST_RETRY, poll_interval=0.05)
    worker = TaskWorker(
        "w1",
        queue,
        {**handlers, "probe": probe},
        config,
        TaskWorkerServices(hooks=hooks, dead_letter_queue=dlq, **services),
    )
    return worker, hooks, dlq


async def test_worker_retries_with_growing_delays_then_dead_letters_with_traceback() -> None:
    queue = RecordingQueue()
    store = InMemoryResultStore()
    attempts: list[int] = []
    healthy = False

    async def flaky(n: int) -> int:
        attempts.append(n)
        if not healthy:
            raise_value_error(n)
        return n * 10

    worker, hooks, dlq = make_worker(queue, {"flaky": flaky}, result_store=store)
    job = Job(name="flaky", args=(5,), max_retries=3)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))

    assert attempts == [5, 5, 5, 5]
    assert len(queue.retry_delays) == 3
    assert queue.retry_delays == sorted(queue.retry_delays)
    assert queue.retry_delays[0] < queue.retry_delays[1] < queue.retry_delays[2]
    record = dlq.get(job.id)
    assert record is not None
    assert record.error == "ValueError: bad input 5"
    assert record.traceback is not None
    assert "raise_value_error" in record.traceback
    assert "ValueError: bad input 5" in record.traceback
    assert record.attempt_count == 4  # the first run and 3 retries, as the log says
    assert record.metadata["reason"] == "max_retries"
    assert record.metadata["attempts"] == 4
    failed = await store.get(job.id)
    assert failed is not None
    assert not failed.success
    assert await queue.count("tasks") == 0
    stats = worker.get_stats()
    assert (stats.jobs_failed, stats.jobs_retried, stats.jobs_dead_lettered) == (4, 3, 1)

    # DeadLetterQueue.retry hands the job back; enqueued again it now succeeds.
    healthy = True
    retried = dlq.retry(job.id)
    assert retried is not None
    assert retried.id == job.id
    assert (retried.status, retried.retry_count, retried.last_error) == (
        JobStatus.PENDING,
        0,
        None,
    )
    (await queue.enqueue(retried)).unwrap()
    result = await store.wait(job.id, timeout=5)
    await hooks.wait_until(lambda: job.id in hooks.ids("task.completed"))
    assert result is not None
    result = await store.get(job.id)
    assert result is not None
    assert result.success
    assert result.data == 50
    assert dlq.size == 0
    await worker.stop()


def raise_value_error(n: int) -> None:
    msg = f"bad input {n}"
    raise ValueError(msg)


async def test_worker_requeue_from_dlq_runs_the_job_again() -> None:
    queue = MemoryTaskQueue()
    healthy = False

    async def once_broken() -> str:
        if not healthy:
            msg = "down"
            raise RuntimeError(msg)
        return "up"

    worker, hooks, dlq = make_worker(queue, {"once_broken": once_broken})
    job = Job(name="once_broken", max_retries=0)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    healthy = True
    assert await dlq.requeue(job.id, queue) == job.id
    await hooks.wait_until(lambda: job.id in hooks.ids("task.completed"))
    await worker.stop()


@pytest.mark.parametrize(
    "error",
    [
        ValueError("value"),
        CustomBaseError("custom base"),
        KeyboardInterrupt("keyboard"),
        SystemExit(3),
        GeneratorExit("generator"),
        MemoryError("memory"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_worker_catches_every_exception_type(error: BaseException) -> None:
    """Regression: no exception type may make a failure vanish."""
    queue = MemoryTaskQueue()
    calls = 0

    async def boom() -> None:
        nonlocal calls
        calls += 1
        raise error

    record = await dead_letter_of(queue, "boom", boom, max_retries=1)
    assert calls == 2
    assert record.error.startswith(type(error).__name__)
    assert await queue.count("tasks") == 0


async def dead_letter_of(
    queue: MemoryTaskQueue, name: str, handler: Any, *, max_retries: int
) -> FailureRecord:
    """Run one job of `handler` until it is dead-lettered; the worker still runs after it.

    Returns:
        The job's dead-letter record.
    """
    worker, hooks, dlq = make_worker(queue, {name: handler})
    job = Job(name=name, max_retries=max_retries)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await alive(worker, queue, hooks)
    assert worker.running
    await worker.stop()
    record = dlq.get(job.id)
    assert record is not None
    return record


class Unprintable(Exception):  # noqa: N818 - named for what it does
    def __str__(self) -> str:
        msg = "no message for you"
        raise RuntimeError(msg)


async def test_an_exception_whose_message_cannot_be_read_is_settled_like_any() -> None:
    """Its job is retried, then dead-lettered, named by its type: never left to its lease."""
    queue = MemoryTaskQueue()

    async def weird() -> None:
        raise Unprintable

    record = await dead_letter_of(queue, "weird", weird, max_retries=1)
    assert record.error == "Unprintable: <its message could not be read: RuntimeError>"
    assert record.attempt_count == 2


async def test_worker_catches_exceptions_from_sync_handlers() -> None:
    queue = MemoryTaskQueue()

    def sync_boom() -> None:
        raise SystemExit(2)

    record = await dead_letter_of(queue, "sync_boom", sync_boom, max_retries=0)
    assert record.error == "SystemExit: 2"


async def test_worker_dead_letters_unknown_tasks_without_retrying() -> None:
    queue = RecordingQueue()
    worker, hooks, dlq = make_worker(queue, {})
    job = Job(name="no_such_task", max_retries=5)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await alive(worker, queue, hooks)
    await worker.stop()

    assert queue.retry_delays == []
    record = dlq.get(job.id)
    assert record is not None
    assert record.metadata["reason"] == "unknown_task"
    assert "'no_such_task'" in record.error
    assert "'probe'" in record.error
    assert "register" in record.error
    assert await queue.count("tasks") == 0


async def test_worker_dead_letters_poison_jobs() -> None:
    queue = MemoryTaskQueue()
    worker, hooks, dlq = make_worker(queue, {})
    poison = make_poison_job("p-1", b"\x00not json", "Job payload is not valid JSON.")
    assert poison.name == POISON_JOB_NAME
    (await queue.enqueue(poison)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: "p-1" in hooks.ids("task.failed"))
    await alive(worker, queue, hooks)
    await worker.stop()

    record = dlq.get("p-1")
    assert record is not None
    assert record.metadata["reason"] == "poison"
    # `dlq show` names the process as `inspect` lists it, and the worker within it.
    assert record.metadata["process"] == worker_identity()
    assert dead_letter_row(record)["worker"] == f"{worker_identity()} {worker.worker_id}"
    assert "not valid JSON" in record.error
    assert record.job.metadata["raw_payload"].endswith("not json")
    assert await queue.count("tasks") == 0


async def test_a_dead_letter_names_the_workers_queue_when_its_job_names_none() -> None:
    # A backend that built the stand-in of an undecodable payload without its queue:
    # `dlq retry` reads the queue from the record, so the worker fills in its own.
    queue = MemoryTaskQueue(queue_name="emails")
    worker, hooks, dlq = make_worker(queue, {})
    poison = make_poison_job("p-2", b"\x00", "Job payload is not valid JSON.")
    (await queue.enqueue(poison)).unwrap()
    poison.queue_name = None  # the memory queue keeps this object: what a worker takes
    await worker.start()
    await hooks.wait_until(lambda: "p-2" in hooks.ids("task.failed"))
    await worker.stop()
    record = dlq.get("p-2")
    assert record is not None
    assert record.job.queue_name == "emails"


async def test_worker_dead_letters_a_crash_looping_job() -> None:
    queue = MemoryTaskQueue()
    ran = False

    async def victim() -> None:
        nonlocal ran
        ran = True

    worker, hooks, dlq = make_worker(queue, {"victim": victim})
    job = Job(name="victim")
    (await queue.enqueue(job)).unwrap()
    # Six deliveries that never ended in ack or retry (a worker was stopped each time).
    for _ in range(6):
        leased = await queue.dequeue()
        assert leased is not None
        assert leased.id == job.id
        await queue.nack(job.id, requeue=True)
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await worker.stop()

    assert not ran
    record = dlq.get(job.id)
    assert record is not None
    assert record.metadata["reason"] == "crash_loop"
    assert "6 of its deliveries were never settled" in record.error
    # Not "a worker died": stops, kills and lost leases all end a delivery so.
    assert "a worker died" not in record.error
    assert "stopped, died or was killed, or lost the job's lease before" in record.error


async def test_a_handler_that_cancels_its_own_task_ends_as_a_crash_loop() -> None:
    queue = MemoryTaskQueue()
    runs = 0

    async def cancels_itself() -> None:
        nonlocal runs
        runs += 1
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # not the worker's cancel: it is taken for a shutdown's
        await asyncio.sleep(1)

    worker, hooks, dlq = make_worker(queue, {"cancels_itself": cancels_itself})
    job = Job(name="cancels_itself")
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await alive(worker, queue, hooks)
    await worker.stop()

    assert runs == worker.config.max_deliveries
    assert worker.stats.jobs_released == runs
    record = dlq.get(job.id)
    assert record is not None
    assert record.metadata["reason"] == "crash_loop"
    assert "cancelled by something other than the worker" in record.error
    assert "cancels its own task" in record.error


async def test_worker_times_out_async_handlers() -> None:
    queue = MemoryTaskQueue()
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker, hooks, dlq = make_worker(queue, {"stuck": stuck})
    job = Job(name="stuck", timeout=0.05, max_retries=0)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await alive(worker, queue, hooks)
    await worker.stop()

    assert cancelled.is_set()
    record = dlq.get(job.id)
    assert record is not None
    assert record.error.startswith("TaskTimeoutError")
    assert "0.05 s" in record.error
    assert record.traceback is not None
    assert "stuck" in record.traceback


async def test_worker_times_out_sync_handlers() -> None:
    queue = MemoryTaskQueue()
    release = threading.Event()

    def blocking() -> None:
        release.wait(5)

    worker, hooks, dlq = make_worker(queue, {"blocking": blocking})
    job = Job(name="blocking", timeout=0.05, max_retries=0)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    try:
        await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
        await alive(worker, queue, hooks)
    finally:
        release.set()  # the thread cannot be killed: let it finish
    await worker.stop()
    record = dlq.get(job.id)
    assert record is not None
    assert record.error.startswith("TaskTimeoutError")


async def test_worker_times_out_a_handler_that_swallows_cancellation() -> None:
    queue = MemoryTaskQueue()

    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "ignored the cancel"
        return "unreachable"

    worker, hooks, dlq = make_worker(queue, {"stubborn": stubborn})
    job = Job(name="stubborn", timeout=0.05, max_retries=0)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await alive(worker, queue, hooks)
    await worker.stop()
    record = dlq.get(job.id)
    assert record is not None
    assert record.error.startswith("TaskTimeoutError")


async def test_worker_reports_wrong_arguments_clearly() -> None:
    queue = MemoryTaskQueue()

    async def one(x: int, unbound: Any) -> int:
        return x

    worker, hooks, dlq = make_worker(queue, {"one": one})
    too_many = Job(name="one", args=(1, 2, 3), max_retries=0)
    missing = Job(name="one", args=(1,), max_retries=0)
    unknown_kw = Job(name="one", args=(1, 2), kwargs={"nope": 1}, max_retries=0)
    for job in (too_many, missing, unknown_kw):
        (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: len(hooks.ids("task.failed")) == 3)
    await worker.stop()

    errors = {job_id: dlq.get(job_id).error for job_id in hooks.ids("task.failed")}  # type: ignore[union-attr]
    # A job that fits the signature is called directly: Python words the error.
    assert "takes 2 positional arguments but 3 were given" in errors[too_many.id]
    assert "no DI container is configured" in errors[missing.id]
    assert "unexpected keyword argument 'nope'" in errors[unknown_kw.id]


async def test_worker_reports_unresolvable_string_annotations() -> None:
    class LocalOnly:
        pass

    container = object()  # never consulted: the annotation is not a type

    async def local(dep: LocalOnly) -> None:
        return None

    queue = MemoryTaskQueue()
    worker, hooks, dlq = make_worker(queue, {"local": local}, container=container)
    job = Job(name="local", max_retries=0)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await worker.stop()
    record = dlq.get(job.id)
    assert record is not None
    assert "could not be resolved to a type" in record.error


async def test_worker_keeps_the_job_when_the_dlq_fails() -> None:
    class BrokenDLQ(DeadLetterQueue):
        def add(self, job: Job, error: str, traceback: str | None = None, **metadata: Any) -> None:
            msg = "dlq storage down"
            raise OSError(msg)

    queue = MemoryTaskQueue()
    hooks = HookRecorder()
    worker = TaskWorker(
        "w1",
        queue,
        {"probe": probe, "bad": raise_value_error},
        TaskWorkerConfig(retry=FAST_RETRY.model_copy(update={"max_delay": 60.0})),
        TaskWorkerServices(hooks=hooks, dead_letter_queue=BrokenDLQ()),
    )
    job = Job(name="bad", args=(1,), max_retries=0)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await alive(worker, queue, hooks)
    await worker.stop()
    assert worker.stats.jobs_failed == 1
    # Not acked away: the job waits for a later attempt instead of vanishing.
    assert await queue.count("tasks", JobStatus.PENDING) == 1
    assert job.id not in hooks.ids("task.failed")


async def test_worker_awaits_a_persistent_dlq() -> None:
    queue = MemoryTaskQueue()
    dlq = PersistentDeadLetterQueue()
    hooks = HookRecorder()

    async def bad() -> None:
        msg = "nope"
        raise LookupError(msg)

    worker = TaskWorker(
        "w1",
        queue,
        {"bad": bad},
        TaskWorkerConfig(retry=FAST_RETRY),
        TaskWorkerServices(hooks=hooks, dead_letter_queue=dlq),
    )
    job = Job(name="bad", max_retries=0)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await worker.stop()
    record = await dlq.get(job.id)
    assert record is not None
    assert record.error == "LookupError: nope"
    assert record.traceback is not None
    assert "LookupError" in record.traceback


async def test_worker_survives_failing_result_store_and_hooks() -> None:
    class BrokenStore(InMemoryResultStore):
        async def store(self, job_id: str, result: Any) -> None:
            msg = "store down"
            raise ConnectionError(msg)

    class BrokenHooks(HookRecorder):
        async def emit(self, action: str, payload: Any) -> None:
            await super().emit(action, payload)
            msg = "observer bug"
            raise RuntimeError(msg)

    queue = MemoryTaskQueue()
    hooks = BrokenHooks()
    worker = TaskWorker(
        "w1",
        queue,
        {"probe": probe},
        services=TaskWorkerServices(hooks=hooks, result_store=BrokenStore()),
    )
    await worker.start()
    await alive(worker, queue, hooks)
    await alive(worker, queue, hooks)
    await worker.stop()
    assert await queue.count("tasks") == 0


async def test_worker_uses_a_retry_policy_when_given() -> None:
    class Policy:
        def __init__(self) -> None:
            self.attempts: list[int] = []

        def compute_delay(self, attempt: int) -> float:
            self.attempts.append(attempt)
            return 0.001 * (attempt + 1)

    queue = RecordingQueue()
    policy = Policy()
    worker, hooks, _ = make_worker(queue, {"bad": raise_value_error}, retry_policy=policy)
    job = Job(name="bad", args=(0,), max_retries=2)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await worker.stop()
    assert policy.attempts == [0, 1]
    assert queue.retry_delays == [0.001, 0.002]


async def test_a_multi_line_error_is_logged_on_one_line(caplog: pytest.LogCaptureFixture) -> None:
    # A handler's message with line breaks could otherwise pass for records of its own.
    queue = MemoryTaskQueue()

    async def boom() -> None:
        msg = "first line\nERROR forged record"
        raise RuntimeError(msg)

    worker, hooks, dlq = make_worker(queue, {"boom": boom})
    job = Job(name="boom", max_retries=1)
    (await queue.enqueue(job)).unwrap()
    with caplog.at_level(logging.WARNING, logger="lexigram.tasks"):
        await worker.start()
        await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
        await worker.stop()
    lines = [r.getMessage() for r in caplog.records if job.id in r.getMessage()]
    assert len(lines) == 2  # the retry's warning and the dead letter's error
    assert all("\n" not in line and "first line\\nERROR forged record" in line for line in lines)
    record = dlq.get(job.id)
    assert record is not None
    assert "first line\nERROR forged record" in record.error  # the record keeps it as it was


# -- a CancelledError the handler raises itself ---------------------------------------

OWN_CANCEL = "CancelledError: the handler raised CancelledError without the worker cancelling it"


async def leaks_an_inner_cancellation() -> None:
    """What a library can do: await an inner task that was cancelled, and let it out."""
    inner = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    inner.cancel()
    await inner


async def raises_cancelled_error() -> None:
    msg = "upstream gave up"
    raise asyncio.CancelledError(msg)


def sync_raises_cancelled_error() -> None:
    raise asyncio.CancelledError


@pytest.mark.parametrize(
    "handler",
    [leaks_an_inner_cancellation, raises_cancelled_error, sync_raises_cancelled_error],
    ids=lambda h: h.__name__,
)
async def test_a_cancelled_error_the_handler_raises_itself_fails_the_attempt(handler: Any) -> None:
    """Retried, then dead-lettered like any exception: not released as a stopped run.

    The worker cancelled nothing (no stop, cancel, timeout or lost lease), so this is no
    interruption: released, the job came back five times and then read as a crash loop.
    """
    queue = RecordingQueue()
    worker, hooks, dlq = make_worker(queue, {"leaky": handler})
    job = Job(name="leaky", max_retries=2)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await alive(worker, queue, hooks)
    await worker.stop()

    record = dlq.get(job.id)
    assert record is not None
    assert record.error.startswith(OWN_CANCEL)
    assert record.metadata["reason"] == "max_retries"
    assert record.attempt_count == 3
    assert record.traceback is not None
    assert handler.__name__ in record.traceback
    assert len(queue.retry_delays) == 2  # retried by the retry policy, with backoff
    stats = worker.get_stats()
    assert (stats.jobs_retried, stats.jobs_dead_lettered) == (2, 1)
    assert (stats.jobs_released, stats.jobs_cancelled, stats.jobs_lost) == (0, 0, 0)
    assert await queue.count("tasks") == 0


async def test_a_cancelled_error_the_handler_raises_keeps_its_message() -> None:
    queue = MemoryTaskQueue()
    record = await dead_letter_of(queue, "leaky", raises_cancelled_error, max_retries=0)
    assert record.error.startswith(OWN_CANCEL)
    assert "so this attempt failed (its message: upstream gave up)." in record.error


async def test_a_cancelled_error_the_handler_raises_follows_the_tasks_retry_options() -> None:
    # dont_retry_on names it: dead-lettered at once, as for any exception it names.
    queue = RecordingQueue()
    handler = task(name="leaky", dont_retry_on=(asyncio.CancelledError,))(raises_cancelled_error)
    record = await dead_letter_of(queue, "leaky", handler, max_retries=5)
    assert record.metadata["reason"] == "not_retried"
    assert record.error.startswith(OWN_CANCEL)
    assert queue.retry_delays == []


async def test_a_timeout_stays_a_timeout_when_the_handler_raises_a_new_cancelled_error() -> None:
    """The worker did cancel it: its reason wins over whichever CancelledError comes out."""
    queue = MemoryTaskQueue()

    async def rewraps() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            msg = "cleaned up"
            raise asyncio.CancelledError(msg) from None

    worker, hooks, dlq = make_worker(queue, {"rewraps": rewraps})
    job = Job(name="rewraps", timeout=0.05, max_retries=0)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await alive(worker, queue, hooks)
    await worker.stop()
    record = dlq.get(job.id)
    assert record is not None
    assert record.error.startswith("TaskTimeoutError")


async def test_a_stop_still_releases_a_job_whose_handler_raises_a_new_cancelled_error() -> None:
    queue = MemoryTaskQueue()
    entered = asyncio.Event()

    async def rewraps() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise asyncio.CancelledError from None

    worker, _, dlq = make_worker(queue, {"rewraps": rewraps})
    job = Job(name="rewraps", max_retries=3)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await asyncio.wait_for(entered.wait(), 5)
    await worker.stop()
    assert dlq.get(job.id) is None
    assert worker.stats.jobs_released == 1
    assert worker.stats.jobs_retried == 0
    waiting = await queue.get_job(job.id)
    assert waiting is not None
    assert (waiting.status, waiting.retry_count) == (JobStatus.PENDING, 0)


async def test_an_outside_cancel_of_the_jobs_task_still_propagates() -> None:
    """A cancel request on the job's task (loop shutdown) is no handler failure."""
    queue = MemoryTaskQueue()
    entered: list[int] = []
    changed = asyncio.Event()

    async def waits() -> None:
        entered.append(1)
        changed.set()
        await asyncio.Event().wait()

    async def wait_entered(count: int) -> None:
        async with asyncio.timeout(5):
            while len(entered) < count:
                changed.clear()
                await changed.wait()

    worker, _, dlq = make_worker(queue, {"waits": waits})
    job = Job(name="waits", max_retries=3)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await wait_entered(1)
    running = worker._in_flight[job.id].task
    assert running is not None
    running.cancel()  # e.g. the event loop shutting down
    await asyncio.wait({running})
    assert running.cancelled()  # propagated, not settled as the handler's failure
    await wait_entered(2)  # released: the worker took it again
    await worker.stop()
    assert dlq.get(job.id) is None
    assert (worker.stats.jobs_released, worker.stats.jobs_retried) == (2, 0)
    waiting = await queue.get_job(job.id)
    assert waiting is not None
    assert (waiting.status, waiting.retry_count) == (JobStatus.PENDING, 0)
