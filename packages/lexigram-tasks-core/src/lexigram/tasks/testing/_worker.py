"""Conformance through the real worker: heartbeats keep a long job, poison is dead-lettered.

`QueueWorkerConformance` runs a job three times longer than the lease through two
`TaskWorker` objects on two queue handles (two worker processes) and checks it ran
exactly once: the worker's heartbeat, timed from `lease_seconds`, must keep the lease.
It also checks that a job given back unrun (`retry_later` with the give-back counted in
its metadata, as stopping workers and rate limits do) more often than `max_deliveries`
still runs: the queue must keep the metadata `retry_later` is given.

`QueuePoisonConformance` is opt-in: a backend that can store raw bytes where an
encoded job would be implements `plant_raw_payload`, and the kit checks that such a
payload is leased as a poison job (never raised from `dequeue`) and that a worker
dead-letters it with the decode error, logs it once (its dead-letter ERROR; the backend
does not log it too) and keeps running other jobs.
"""

# ruff: noqa: S101, PLR2004 - the kit is pytest tests: asserts on literal expected counts

from __future__ import annotations

import abc
import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    POISON_JOB_NAME,
    FailureRecord,
    Job,
    JobStatus,
    TaskQueueProtocol,
)
from lexigram.tasks._give_back import give_back
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import TaskWorker
from lexigram.tasks.testing._base import (
    QueueConformanceBase,
    QueueFactory,
    enqueue_ok,
    lease_one,
    make_job,
    next_job,
    status_of,
    token_of,
)

_SLOW_TASK = "conformance.slow"
_QUICK_TASK = "conformance.quick"
# Raw payloads no `decode_job` accepts: not JSON, and JSON that is not an envelope.
POISON_PAYLOADS: tuple[bytes, ...] = (
    b"\xff\xfe not a job \x00",
    b'{"v": 1, "nojob": []}',
    # Valid JSON that decodes to no job: a worker that took it for an error of its own
    # (not a poison payload) kept its whole batch leased and never ran the others.
    b'{"v": 1, "job": 5}',
    b"[" * 5000 + b"]" * 5000,
)


async def _wait_until(predicate: Callable[[], Any], within: float, what: str) -> None:
    """Poll `predicate` (sync or async) every 20 ms until it holds; fail after `within`."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"{what} did not happen within {within:.1f}s"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def _running(*workers: TaskWorker) -> AsyncIterator[None]:
    for worker in workers:
        await worker.start()
    try:
        yield
    finally:
        for worker in workers:
            await worker.stop()


async def _dead_letter_record(dlq: Any, job_id: str) -> FailureRecord | None:
    """Return the worker DLQ's record for `job_id` (its `get` may be sync or async)."""
    record = dlq.get(job_id)
    if inspect.isawaitable(record):
        record = await record
    return record if isinstance(record, FailureRecord) else None


class QueueWorkerConformance(QueueConformanceBase):
    """A job running longer than its lease, heartbeated by the real worker, runs once."""

    async def test_job_three_leases_long_runs_once_through_the_worker(
        self, make_queue: QueueFactory, lease_seconds: float
    ) -> None:
        """Two workers on two handles; a job lasting 3x the lease is run exactly once."""
        producer = await make_queue()
        runs: list[float] = []
        finished = asyncio.Event()

        async def slow() -> str:
            runs.append(time.monotonic())
            await asyncio.sleep(lease_seconds * 3)
            finished.set()
            return "done"

        handlers = {_SLOW_TASK: slow}
        first = TaskWorker("conformance-worker-1", await make_queue(), handlers)
        second = TaskWorker("conformance-worker-2", await make_queue(), handlers)
        job = make_job(_SLOW_TASK, timeout=lease_seconds * 20, max_retries=0)
        async with _running(first, second):
            await enqueue_ok(producer, job)
            await asyncio.wait_for(finished.wait(), lease_seconds * 3 + self.prompt_seconds)

            async def acked() -> bool:
                return await producer.count(producer.queue_name) == 0

            await _wait_until(acked, self.prompt_seconds, "the ack of the finished job")
            # Give a lost lease every chance to show: one more lease and its margin.
            await asyncio.sleep(lease_seconds + self.redelivery_margin)
        assert len(runs) == 1, (
            f"a job lasting 3x the {lease_seconds}s lease ran {len(runs)} times; the "
            "worker heartbeats every lease_seconds / 3, so lease_seconds must be the real "
            "lease and extend_lease must keep it"
        )
        assert await producer.get_job(job.id) is None

    async def test_a_job_given_back_unrun_more_than_max_deliveries_still_runs(
        self, make_queue: QueueFactory
    ) -> None:
        """Give-backs are counted in the job's metadata, so they are never a crash loop."""
        queue = await make_queue()
        job = make_job(_QUICK_TASK, args=(7,))
        await enqueue_ok(queue, job)
        given_back = 3
        for _ in range(given_back):
            leased = await next_job(queue, self.prompt_seconds)
            assert leased is not None, "a job given back unrun did not come back"
            assert await give_back(queue, leased), "retry_later refused a leased job"
        ran: list[int] = []

        async def quick(number: int) -> int:
            ran.append(number)
            return number

        worker = TaskWorker(
            "conformance-given-back",
            await make_queue(),
            {_QUICK_TASK: quick},
            TaskWorkerConfig(max_deliveries=1),
        )
        async with _running(worker):
            await _wait_until(lambda: ran, self.prompt_seconds, "the run of the job given back")
        assert ran == [7], "a job given back unrun was dead-lettered as a crash loop"
        record = await _dead_letter_record(worker.dlq, job.id)
        assert record is None, f"the job was dead-lettered: {record.error}"
        assert worker.stats.jobs_succeeded == 1


class QueuePoisonConformance(QueueConformanceBase, abc.ABC):
    """Opt-in: an undecodable stored payload is leased as a poison job and dead-lettered.

    Subclass it next to `QueueConformance` and implement `plant_raw_payload`.
    """

    @abc.abstractmethod
    async def plant_raw_payload(self, queue: TaskQueueProtocol, raw: bytes) -> str:
        """Store `raw` where an encoded job would be, so the next dequeue meets it.

        Args:
            queue: A queue from `make_queue` (empty, or holding what the test put in).
            raw: Bytes that `decode_job` rejects.

        Returns:
            The job id the payload was stored under (what the poison job's id will be).
        """

    @pytest.mark.parametrize(
        "raw",
        POISON_PAYLOADS,
        ids=["not-json", "not-an-envelope", "job-not-an-object", "nested-too-deeply"],
    )
    async def test_undecodable_payload_is_leased_as_a_poison_job(
        self, queue: TaskQueueProtocol, raw: bytes
    ) -> None:
        """`dequeue` never raises: it leases a poison job, with a token, that can be acked."""
        job_id = await self.plant_raw_payload(queue, raw)
        poison = await lease_one(queue)
        assert poison.id == job_id, f"the poison job has id {poison.id!r}, not {job_id!r}"
        assert poison.name == POISON_JOB_NAME, (
            f"an undecodable payload was handed out as {poison.name!r}; lease "
            "make_poison_job(job_id, raw, error) instead"
        )
        assert poison.last_error, "the poison job does not carry the decode error"
        assert poison.queue_name == queue.queue_name, (
            f"the poison job names queue {poison.queue_name!r}, not {queue.queue_name!r}: "
            "pass make_poison_job(..., queue_name=...) so that its dead letter names the "
            "queue it came from"
        )
        assert status_of(poison) is JobStatus.RUNNING
        token = token_of(poison)
        assert await queue.count(queue.queue_name, JobStatus.RUNNING) == 1
        assert await queue.ack(poison.id, lease_token=token) is True
        assert await queue.count(queue.queue_name) == 0
        assert await queue.dequeue() is None, "an acked poison payload came back"

    async def test_poison_payload_does_not_block_other_jobs(self, queue: TaskQueueProtocol) -> None:
        """Jobs around a poison payload are delivered, in a batch too."""
        before = make_job(priority=5)
        await enqueue_ok(queue, before)
        poison_id = await self.plant_raw_payload(queue, POISON_PAYLOADS[0])
        after = make_job(priority=0)
        await enqueue_ok(queue, after)
        delivered: dict[str, Job] = {}
        deadline = time.monotonic() + self.prompt_seconds
        while len(delivered) < 3 and time.monotonic() < deadline:
            for job in await queue.dequeue_batch(3, timeout=0.2):
                delivered[job.id] = job
        assert set(delivered) == {before.id, poison_id, after.id}, (
            "a poison payload stopped other jobs from being delivered"
        )
        assert delivered[poison_id].name == POISON_JOB_NAME
        assert delivered[before.id].name == before.name
        for job in delivered.values():
            assert await queue.ack(job.id, lease_token=job.lease_token) is True

    async def test_worker_dead_letters_poison_and_keeps_running(
        self, make_queue: QueueFactory
    ) -> None:
        """Through a real worker the poison ends in the DLQ with the decode error."""
        producer = await make_queue()
        done: list[int] = []

        async def quick(number: int) -> int:
            done.append(number)
            return number

        worker = TaskWorker("conformance-poison", await make_queue(), {_QUICK_TASK: quick})
        poison_id = await self.plant_raw_payload(producer, POISON_PAYLOADS[0])
        async with _running(worker):
            for number in range(3):
                await enqueue_ok(producer, make_job(_QUICK_TASK, args=(number,)))

            async def settled() -> bool:
                return await producer.count(producer.queue_name) == 0

            await _wait_until(settled, self.prompt_seconds, "settling the poison and 3 jobs")
            assert worker.running, "the worker stopped after meeting a poison payload"
            record = await _dead_letter_record(worker.dlq, poison_id)
            assert record is not None, "the poison payload was not dead-lettered"
            assert record.job.name == POISON_JOB_NAME
            decode_error = record.job.metadata.get("poison_error")
            assert decode_error, "the poison job does not carry its decode error in metadata"
            assert decode_error in record.error, (
                f"the dead-letter record says {record.error!r}, not the decode error"
            )
            await enqueue_ok(producer, make_job(_QUICK_TASK, args=(99,)))
            await _wait_until(lambda: 99 in done, self.prompt_seconds, "a job after the poison")
        assert sorted(done) == [0, 1, 2, 99]
        assert await next_job(producer, 0.1) is None

    async def test_a_poison_payload_is_logged_once(
        self, make_queue: QueueFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One record at WARNING or above names the poison job: the worker's dead-letter ERROR.

        The backend does not log the payload it could not decode: the worker's record
        already names the job, the reason (``poison``, with the decode error) and the
        dead-letter queue, and a second record for the same message doubles every alert.
        """
        producer = await make_queue()
        worker = TaskWorker("conformance-poison-log", await make_queue(), {})
        poison_id = await self.plant_raw_payload(producer, POISON_PAYLOADS[1])
        with caplog.at_level(logging.WARNING):
            async with _running(worker):

                async def settled() -> bool:
                    return await producer.count(producer.queue_name) == 0

                await _wait_until(settled, self.prompt_seconds, "settling the poison payload")
                dead = await _dead_letter_record(worker.dlq, poison_id)
        assert dead is not None, "the poison payload was not dead-lettered"
        decode_error = str(dead.job.metadata.get("poison_error") or "")
        records = [
            record
            for record in caplog.records
            if record.levelno >= logging.WARNING and poison_id in record.getMessage()
        ]
        shown = "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in records)
        assert len(records) == 1, (
            f"the poison payload {poison_id} was logged {len(records)} times at WARNING or "
            f"above, not once (the worker's dead-letter record):\n{shown}"
        )
        [record] = records
        message = record.getMessage()
        assert record.levelno == logging.ERROR, f"the one record is not an ERROR: {shown}"
        assert "dead-letter" in message, f"the one record does not say dead-lettered: {shown}"
        assert "poison" in message, f"the one record does not give the reason: {shown}"
        assert decode_error, "the poison job does not carry its decode error in metadata"
        assert decode_error in message, (
            f"the one record does not carry the decode error {decode_error!r}: {shown}"
        )


__all__ = ["POISON_PAYLOADS", "QueuePoisonConformance", "QueueWorkerConformance"]
