"""The dead-letter admin functions refuse to retry the stand-in of an undecodable payload.

Only a preview of such a payload is kept, so the stand-in job (`POISON_JOB_NAME`, no
arguments) put back on a queue could only be dead-lettered again: `retry_dead_letter`
(``dlq retry``, the dashboard's retry of one job) refuses it, and `retry_dead_letters`
(``dlq retry-all``, the dashboard's bulk retries) leaves it in place.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lexigram.contracts.tasks import FailureRecord, Job, TaskQueueProtocol, make_poison_job
from lexigram.tasks.admin import OperationError, retry_dead_letter, retry_dead_letters
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.dlq import InMemoryDLQBackend, PersistentDeadLetterQueue

DECODE_ERROR = "TaskDecodeError: Job payload is not valid JSON."


class Backend:
    """One backend's queues (by name, created on first use) and its dead-letter storage."""

    def __init__(self) -> None:
        self.storage = InMemoryDLQBackend()
        self.queues: dict[str, MemoryTaskQueue] = {}

    def queue_for(self, name: str | None) -> TaskQueueProtocol:
        name = name or "tasks"
        return self.queues.setdefault(name, MemoryTaskQueue(queue_name=name))

    async def waiting(self) -> dict[str, int]:
        return {name: await queue.count(name) for name, queue in self.queues.items()}

    async def dead_letter(self, job: Job, error: str, reason: str) -> Job:
        dlq = PersistentDeadLetterQueue(backend=self.storage)
        await dlq.add(job, error, reason=reason)
        return job


def poison_job(job_id: str = "poison-0001") -> Job:
    return make_poison_job(job_id, b"\xff\xfe not a job", DECODE_ERROR, queue_name="emails")


def unverified_job() -> Job:
    # Dead-lettered as poison under its own name: the record's reason alone says so.
    return Job(name="send", args=("a@b.c",), queue_name="emails")


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.mark.parametrize("make", [poison_job, unverified_job], ids=["stand-in", "reason"])
async def test_retry_dead_letter_refuses_a_poison_record(
    backend: Backend, make: Callable[[], Job]
) -> None:
    job = await backend.dead_letter(make(), DECODE_ERROR, reason="poison")
    for queue_name in (None, "tasks"):  # its own queue, or one named by --queue
        with pytest.raises(OperationError) as caught:
            await retry_dead_letter(
                backend.storage, backend.queue_for, job.id[:8], queue_name=queue_name
            )
        message = caught.value.message
        assert "\n" not in message
        assert f"Job {job.id} of queue 'emails' was dead-lettered because its payload" in message
        assert "only a preview of the payload was kept, so it cannot be retried" in message
        assert "Fix the producer that wrote it and enqueue the job again" in message
        assert f"`lexigram-tasks dlq delete {job.id}`" in message
    assert await backend.storage.get(job.id) is not None  # kept for inspection
    assert all(count == 0 for count in (await backend.waiting()).values())


async def test_retry_dead_letter_still_retries_other_records(backend: Backend) -> None:
    await backend.dead_letter(poison_job(), DECODE_ERROR, reason="poison")
    failed = await backend.dead_letter(
        Job(name="send", queue_name="emails"), "ValueError: boom", reason="max_retries"
    )
    job, target = await retry_dead_letter(backend.storage, backend.queue_for, failed.id)
    assert (job.id, target) == (failed.id, "emails")
    assert await backend.waiting() == {"tasks": 0, "emails": 1}


async def test_retry_dead_letters_skips_poison_records(backend: Backend) -> None:
    poison = await backend.dead_letter(poison_job(), DECODE_ERROR, reason="poison")
    unverified = await backend.dead_letter(unverified_job(), DECODE_ERROR, reason="poison")
    failed = await backend.dead_letter(
        Job(name="send", queue_name="emails"), "ValueError: boom", reason="max_retries"
    )
    skipped: list[FailureRecord] = []
    moved = await retry_dead_letters(backend.storage, backend.queue_for, on_skipped=skipped.append)
    assert moved == 1
    assert sorted(r.job.id for r in skipped) == sorted([poison.id, unverified.id])
    assert await backend.waiting() == {"emails": 1}
    assert await backend.storage.get(failed.id) is None
    assert await backend.storage.size() == 2


async def test_retry_dead_letters_by_id_skips_poison_records(backend: Backend) -> None:
    # The dashboard's retry of the ticked jobs, one of them poison; no callback given.
    poison = await backend.dead_letter(poison_job(), DECODE_ERROR, reason="poison")
    failed = await backend.dead_letter(
        Job(name="send", queue_name="emails"), "ValueError: boom", reason="max_retries"
    )
    moved = await retry_dead_letters(
        backend.storage, backend.queue_for, job_ids=[poison.id, failed.id]
    )
    assert moved == 1
    assert await backend.storage.get(poison.id) is not None
    assert await backend.waiting() == {"emails": 1}


@pytest.mark.parametrize("ident", ["", "0", "abc"])
async def test_an_id_shorter_than_a_prefix_retries_nothing(ident: str) -> None:
    # `dlq retry "$ID"` with ID unset retried whichever record an empty prefix met first.
    backend = Backend()
    job = await backend.dead_letter(Job(name="send"), "boom", "failed")
    with pytest.raises(OperationError, match="a prefix of an id needs at least 4 characters"):
        await retry_dead_letter(backend.storage, backend.queue_for, ident)
    assert await backend.storage.get(job.id) is not None
    assert all(count == 0 for count in (await backend.waiting()).values())
