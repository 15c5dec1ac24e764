"""Dead-letter queues: the sync DeadLetterQueue and the async PersistentDeadLetterQueue."""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    DLQBackendProtocol,
    DLQProtocol,
    Err,
    FailureRecord,
    Job,
    JobResult,
    JobStatus,
    TaskConfigurationError,
    TaskQueueError,
    TaskValidationError,
    make_poison_job,
)
from lexigram.tasks._producer import install_task_queues
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.dlq import (
    DeadLetterQueue,
    DLQBackend,
    InMemoryDLQBackend,
    PersistentDeadLetterQueue,
)
from lexigram.tasks.handles import JobHandle, register_job_stores
from lexigram.tasks.results import InMemoryResultStore


def failed_job(name: str = "send", retries: int = 3) -> Job:
    job = Job(name=name, args=(1, "a"), kwargs={"k": True}, max_retries=retries)
    job.retry_count = retries
    job.status = JobStatus.FAILED
    job.last_error = "boom"
    job.started_at = job.completed_at = time.time()
    job.delivery_count = retries + 1
    return job


def test_dlq_add_get_and_list_newest_first() -> None:
    dlq = DeadLetterQueue()
    first, second, third = failed_job("a"), failed_job("b"), failed_job("a")
    dlq.add(first, "E1", traceback="tb1", reason="max_retries")
    dlq.add(second, "E2")
    dlq.add(third, "E3")
    record = dlq.get(first.id)
    assert record is not None
    assert (record.error, record.traceback, record.attempt_count) == ("E1", "tb1", 3)
    assert record.metadata == {"reason": "max_retries"}
    assert [r.error for r in dlq.list_failed()] == ["E3", "E2", "E1"]
    assert [r.error for r in dlq.list_failed(job_name="a")] == ["E3", "E1"]
    assert [r.error for r in dlq.list_failed(limit=1)] == ["E3"]
    assert dlq.size == 3
    assert len(dlq) == 3
    assert dlq.get("missing") is None


def test_dlq_evicts_the_oldest_at_capacity() -> None:
    dlq = DeadLetterQueue(max_size=2)
    jobs = [failed_job() for _ in range(3)]
    for job in jobs:
        dlq.add(job, "e")
    assert dlq.get(jobs[0].id) is None
    assert dlq.size == 2
    assert dlq.get_stats()["total_added"] == 3


def test_dlq_retry_resets_the_job() -> None:
    dlq = DeadLetterQueue()
    job = failed_job()
    dlq.add(job, "e")
    retried = dlq.retry(job.id)
    assert retried is job
    assert retried.status is JobStatus.PENDING
    assert (retried.retry_count, retried.delivery_count) == (0, 0)
    assert (retried.last_error, retried.started_at, retried.completed_at, retried.result) == (
        None,
        None,
        None,
        None,
    )
    assert dlq.retry(job.id) is None
    assert dlq.size == 0


def test_dlq_retry_all_remove_purge_clear_and_stats() -> None:
    dlq = DeadLetterQueue(retention_hours=1)
    old, new, other = failed_job("x"), failed_job("x"), failed_job("y")
    for job in (old, new, other):
        dlq.add(job, "e")
    record = dlq.get(old.id)
    assert record is not None
    record.failed_at = time.time() - 7200
    assert dlq.purge() == 1
    assert dlq.purge(older_than_hours=10) == 0
    stats = dlq.get_stats()
    assert stats == {
        "current_size": 2,
        "max_size": 10000,
        "total_added": 3,
        "total_retried": 0,
        "total_purged": 1,
        "by_job_type": {"x": 1, "y": 1},
    }
    assert dlq.remove(other.id) is True
    assert dlq.remove(other.id) is False
    assert [j.id for j in dlq.retry_all()] == [new.id]
    assert dlq.get_stats()["total_retried"] == 1
    dlq.add(failed_job(), "e")
    assert dlq.clear() == 1
    assert dlq.size == 0
    assert "DeadLetterQueue" in repr(dlq)


def test_dlq_rejects_bad_settings() -> None:
    with pytest.raises(TaskConfigurationError, match="max_size"):
        DeadLetterQueue(max_size=0)


async def test_dlq_requeue_enqueues_on_the_queue() -> None:
    queue = MemoryTaskQueue()
    dlq = DeadLetterQueue()
    job = failed_job()
    dlq.add(job, "e")
    assert await dlq.requeue(job.id, queue) == job.id
    assert await queue.count("tasks") == 1
    assert await dlq.requeue("missing", queue) is None


async def test_dlq_requeue_keeps_the_record_when_the_queue_refuses() -> None:
    class Refusing(MemoryTaskQueue):
        async def enqueue(self, task: object) -> Err[TaskQueueError]:
            return Err(TaskValidationError("refused"))

    dlq = DeadLetterQueue()
    job = failed_job()
    dlq.add(job, "e")
    with pytest.raises(TaskQueueError, match="Could not put dead-lettered job"):
        await dlq.requeue(job.id, Refusing())
    assert dlq.get(job.id) is not None


def test_failure_record_round_trips() -> None:
    record = FailureRecord(job=failed_job(), error="e", traceback="tb", attempt_count=3)
    copy = FailureRecord.from_dict(record.to_dict())
    assert copy.job.to_dict() == record.job.to_dict()
    assert (copy.error, copy.traceback, copy.attempt_count) == ("e", "tb", 3)
    assert set(record.to_dict()) >= {
        "job_id",
        "job_name",
        "job_args",
        "job_kwargs",
        "job_priority",
        "job_max_retries",
        "job_timeout",
        "error",
        "traceback",
        "failed_at",
        "attempt_count",
        "metadata",
    }


async def test_in_memory_dlq_backend_satisfies_the_protocol() -> None:
    backend = InMemoryDLQBackend()
    assert isinstance(backend, DLQBackendProtocol)
    assert DLQBackend is DLQBackendProtocol
    await backend.add("a", {"job_id": "a", "n": 1})
    await backend.add("b", {"job_id": "b", "n": 2})
    await backend.add("a", {"job_id": "a", "n": 3})  # replaced, now the newest
    assert [r["n"] for r in await backend.list_all()] == [3, 2]
    assert [r["n"] for r in await backend.list_all(limit=1)] == [3]
    assert await backend.get("b") == {"job_id": "b", "n": 2}
    assert await backend.size() == 2
    assert await backend.remove("b") is True
    assert await backend.remove("b") is False
    assert await backend.clear() == 1


async def test_persistent_dlq_stores_records_in_its_backend() -> None:
    backend = InMemoryDLQBackend()
    dlq = PersistentDeadLetterQueue(backend=backend)
    first, second = failed_job("a"), failed_job("b")
    await dlq.add(first, "E1", traceback="tb", reason="max_retries")
    await dlq.add(second, "E2")
    record = await dlq.get(first.id)
    assert record is not None
    assert (record.error, record.traceback, record.attempt_count) == ("E1", "tb", 3)
    assert record.job.args == (1, "a")
    assert [r.error for r in await dlq.list_failed()] == ["E2", "E1"]
    assert [r.error for r in await dlq.list_failed(job_name="a")] == ["E1"]
    assert await dlq.size() == 2
    assert await backend.size() == 2
    assert dlq.get_stats()["total_added"] == 2


async def test_persistent_dlq_retry_puts_the_job_back_on_its_queue() -> None:
    queue = MemoryTaskQueue()
    dlq = PersistentDeadLetterQueue(queue=queue)
    job = failed_job()
    await dlq.add(job, "e")
    retried = await dlq.retry(job.id)
    assert retried is not None
    assert retried.id == job.id
    assert retried.retry_count == 0
    assert await queue.count("tasks") == 1
    assert await dlq.size() == 0
    assert await dlq.retry(job.id) is None


async def test_persistent_dlq_retry_puts_a_job_of_another_queue_back_on_that_queue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two queues of one backend share its dead-letter storage: the DLQ bound to one of
    # them lists both queues' jobs, and puts each back on its own queue, as
    # `lexigram-tasks dlq retry` does.
    emails, reports = MemoryTaskQueue(queue_name="emails"), MemoryTaskQueue(queue_name="reports")
    storage = InMemoryDLQBackend()
    dlq = PersistentDeadLetterQueue(backend=storage, queue=emails)
    mine, theirs, stray = failed_job(), failed_job(), failed_job()
    mine.queue_name, theirs.queue_name, stray.queue_name = "emails", "reports", "gone"
    for job in (mine, theirs, stray):
        await dlq.add(job, "e")
    uninstall = install_task_queues(emails, {"emails": emails, "reports": reports})
    try:
        assert await dlq.retry(theirs.id) is not None
        assert (await emails.count("emails"), await reports.count("reports")) == (0, 1)
        with pytest.raises(TaskQueueError, match="came from queue 'gone', which no queue"):
            await dlq.retry(stray.id)
        assert await dlq.get(stray.id) is not None  # kept
        with caplog.at_level(logging.WARNING, logger="lexigram.tasks.dlq._persistent"):
            assert [job.id for job in await dlq.retry_all()] == [mine.id]
        assert "left 1 dead-lettered job(s) in the DLQ" in caplog.text
        assert "'gone': 1" in caplog.text
        assert (await emails.count("emails"), await reports.count("reports")) == (1, 1)
        assert await dlq.size() == 1
    finally:
        uninstall()


@pytest.mark.parametrize("registered", [False, True])
async def test_a_retried_job_loses_the_result_of_its_failed_run(registered: bool) -> None:
    # Left in the store, the failure would answer the job's status and result for the
    # new run: `job status` said "failed" of a job waiting again.
    queue, results = MemoryTaskQueue(), InMemoryResultStore()
    if registered:  # the store a provider registers for its queue
        register_job_stores(queue, result_store=results)
        dlq = PersistentDeadLetterQueue(queue=queue)
    else:
        dlq = PersistentDeadLetterQueue(queue=queue, result_store=results)
    retried, requeued = failed_job(), failed_job()
    for job in (retried, requeued):
        await dlq.add(job, "e")
        await results.store(job.id, JobResult.fail("boom"))
    assert await dlq.retry(retried.id) is not None
    assert await dlq.requeue(requeued.id, queue) == requeued.id
    assert await results.get(retried.id) is None
    assert await results.get(requeued.id) is None
    assert await JobHandle(queue, retried.id, result_store=results).status() is JobStatus.PENDING


async def test_persistent_dlq_keeps_the_stand_in_of_an_undecodable_payload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Only a preview of the payload was kept: enqueued again, it could only be
    # dead-lettered again. The API refuses it as `lexigram-tasks dlq retry` does.
    queue = MemoryTaskQueue()
    dlq = PersistentDeadLetterQueue(queue=queue)
    poison = make_poison_job("j-poison", b"\xff{", "bad bytes", queue_name="tasks")
    await dlq.add(poison, "undecodable", reason="poison")
    with pytest.raises(TaskQueueError, match="its payload could not be decoded"):
        await dlq.retry(poison.id)
    with pytest.raises(TaskQueueError, match="cannot be retried"):
        await dlq.requeue(poison.id, queue)
    with caplog.at_level(logging.WARNING, logger="lexigram.tasks.dlq._persistent"):
        assert await dlq.retry_all() == []
    assert "left 1 dead-lettered job(s) in the DLQ whose payloads could not" in caplog.text
    assert await dlq.size() == 1
    assert await queue.count("tasks") == 0


async def test_persistent_dlq_requeue_retry_all_purge_remove_clear() -> None:
    queue = MemoryTaskQueue()
    dlq = PersistentDeadLetterQueue(retention_hours=1)
    jobs = [failed_job() for _ in range(4)]
    for job in jobs:
        await dlq.add(job, "e")
    assert await dlq.requeue(jobs[0].id, queue) == jobs[0].id
    assert await dlq.requeue(jobs[0].id, queue) is None
    data = await dlq.backend.get(jobs[1].id)
    assert data is not None
    data["failed_at"] = time.time() - 7200
    await dlq.backend.add(jobs[1].id, data)
    assert await dlq.purge() == 1
    assert await dlq.remove(jobs[2].id) is True
    retried = await dlq.retry_all()
    assert [j.id for j in retried] == [jobs[3].id]
    await dlq.add(failed_job(), "e")
    assert await dlq.clear() == 1
    stats = dlq.get_stats()
    assert (stats["total_retried"], stats["total_purged"]) == (2, 1)
    assert "PersistentDeadLetterQueue" in repr(dlq)


async def _settle(value: Any) -> Any:
    """What a `DLQProtocol` caller does: await the result when it is awaitable."""
    return await value if inspect.isawaitable(value) else value


@pytest.mark.parametrize("make_dlq", [DeadLetterQueue, PersistentDeadLetterQueue])
async def test_both_dlqs_satisfy_the_one_protocol(make_dlq: Any) -> None:
    dlq: DLQProtocol = make_dlq()
    assert isinstance(dlq, DLQProtocol)
    job, other = failed_job("send"), failed_job("report")
    await _settle(dlq.add(job, "ValueError: bad input", traceback="tb", reason="max_retries"))
    await _settle(dlq.add(other, "KeyError: x"))
    record = await _settle(dlq.get(job.id))
    assert isinstance(record, FailureRecord)
    assert (record.job.id, record.traceback) == (job.id, "tb")
    assert record.error == "ValueError: bad input"
    assert record.metadata == {"reason": "max_retries"}
    listed = await _settle(dlq.list_failed(limit=10))
    assert [r.job.id for r in listed] == [other.id, job.id]
    only = await _settle(dlq.list_failed(job_name="send"))
    assert [r.job.id for r in only] == [job.id]
    queue = MemoryTaskQueue()
    assert await dlq.requeue(job.id, queue) == job.id
    assert await _settle(dlq.get(job.id)) is None
    assert await queue.get_task_count() == 1
    assert await dlq.requeue("no-such-job", queue) is None
    assert await _settle(dlq.remove(other.id)) is True
    assert await _settle(dlq.remove(other.id)) is False
    await _settle(dlq.add(other, "again"))
    assert await _settle(dlq.clear()) == 1


@pytest.mark.parametrize("make_dlq", [DeadLetterQueue, PersistentDeadLetterQueue])
async def test_attempt_count_is_the_workers_attempts(make_dlq: Any) -> None:
    dlq: DLQProtocol = make_dlq()
    ran_twice = failed_job("flaky", retries=1)
    never_ran = failed_job("unknown", retries=0)
    legacy = failed_job("legacy", retries=2)
    await _settle(dlq.add(ran_twice, "E", reason="max_retries", attempts=2, max_retries=1))
    await _settle(dlq.add(never_ran, "E", reason="unknown_task", attempts=0))
    await _settle(dlq.add(legacy, "E", attempts="many"))  # not a count: the retry count
    counts = {
        job.name: (await _settle(dlq.get(job.id))).attempt_count
        for job in (ran_twice, never_ran, legacy)
    }
    assert counts == {"flaky": 2, "unknown": 0, "legacy": 2}
    record = await _settle(dlq.get(ran_twice.id))
    assert record.metadata["max_retries"] == 1


@pytest.mark.parametrize("persistent", [False, True])
async def test_dlq_shows_the_attempt_number_the_worker_logs(
    persistent: bool, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    import logging

    from lexigram.tasks.config import RetryConfig, TaskWorkerConfig
    from lexigram.tasks.decorators import task
    from lexigram.tasks.execution import HandlerRegistry, TaskWorker, TaskWorkerServices
    from lexigram.tasks.testing import HookRecorder

    @task(max_retries=1)
    async def flaky() -> None:
        msg = "still down"
        raise ConnectionError(msg)

    queue = MemoryTaskQueue()
    dlq = PersistentDeadLetterQueue(queue=queue) if persistent else DeadLetterQueue()
    registry = HandlerRegistry()
    registry.register(flaky.name, flaky)
    hooks = HookRecorder()
    worker = TaskWorker(
        "w1",
        queue,
        registry,
        TaskWorkerConfig(retry=RetryConfig(initial_delay=0.01, jitter=0.0), poll_interval=0.05),
        TaskWorkerServices(dead_letter_queue=dlq, hooks=hooks),
    )
    job = Job(name="flaky")
    (await queue.enqueue(job)).unwrap()
    with caplog.at_level(logging.ERROR):
        await worker.start()
        try:
            async with asyncio.timeout(5):
                await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
        finally:
            await worker.stop()
    record = await _settle(dlq.get(job.id))
    assert record.attempt_count == 2
    assert record.job.retry_count == 1
    lines = [r for r in caplog.records if "dead-lettered after 2 attempt(s)" in r.getMessage()]
    assert len(lines) == 1
    # It names the queue the job came from, in the text and as a field of JSON logs.
    assert f"from queue {queue.queue_name!r}" in lines[0].getMessage()
    assert lines[0].queue == queue.queue_name  # type: ignore[attr-defined]
