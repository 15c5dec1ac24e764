"""Every enqueue of the core fails fast, with a clear error, when the queue does not answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence

import pytest

from lexigram.contracts.tasks import BackendConnectionError, Job, Ok, Result, TaskQueueError
from lexigram.tasks import TaskConfig, task
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli._context import load_config
from lexigram.tasks.decorators import (
    DEFAULT_ENQUEUE_TIMEOUT,
    configure_enqueue_timeout,
    enqueue_job,
    enqueue_jobs,
)


class Unanswered(MemoryTaskQueue):
    """A queue whose server never answers an enqueue (a paused broker)."""

    async def enqueue(self, task: Job) -> Result[str, TaskQueueError]:
        await asyncio.Event().wait()
        return Ok(task.id)

    async def enqueue_many(self, tasks: Sequence[Job]) -> list[Result[str, TaskQueueError]]:
        await asyncio.Event().wait()
        return []


@pytest.fixture(autouse=True)
def default_timeout() -> Iterator[None]:
    yield
    configure_enqueue_timeout(DEFAULT_ENQUEUE_TIMEOUT)


@task(name="timeouts.ping")
async def ping() -> None:
    return None


async def test_delay_fails_after_the_enqueue_timeout_naming_the_setting() -> None:
    configure_enqueue_timeout(0.2)
    queue = Unanswered(queue_name="slow")
    began = time.monotonic()
    with pytest.raises(BackendConnectionError) as raised:
        await ping.apply_async(queue)
    assert time.monotonic() - began < 2
    message = str(raised.value)
    assert "'slow'" in message
    assert "within 0.2 s (tasks.backend.enqueue_timeout)" in message
    assert "may or may not have been enqueued" in message


async def test_bulk_enqueue_has_the_same_deadline() -> None:
    configure_enqueue_timeout(0.2)
    with pytest.raises(BackendConnectionError, match="3 jobs"):
        await enqueue_jobs(Unanswered(), [Job(name="timeouts.ping") for _ in range(3)])


async def test_no_timeout_waits_as_long_as_the_queue_takes() -> None:
    configure_enqueue_timeout(None)
    job = await enqueue_job(MemoryTaskQueue(), Job(name="timeouts.ping"))
    assert job.id


def test_the_configuration_sets_the_timeout_for_every_command(tmp_path) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text("tasks:\n  backend:\n    type: memory\n    enqueue_timeout: 0.25\n")
    load_config(str(path), None)
    from lexigram.tasks import _producer

    assert _producer._enqueue_timeout == 0.25
    assert TaskConfig().backend.enqueue_timeout == DEFAULT_ENQUEUE_TIMEOUT
