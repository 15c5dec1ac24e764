"""Fixtures and helpers shared by every conformance class.

A backend supplies one fixture, ``make_queue``: an async factory returning a queue
object on the test's own underlying queue (same queue name, empty at the start of the
test, visibility timeout ``lease_seconds``). Calling it twice must give two handles
on the SAME queue (two consumers, as two worker processes would have); a backend that
lives in one process (memory) may return the same object each time. The fixture owns
cleanup: it closes what it created and removes the queue's data, and must tolerate
queues the kit already closed.
"""

# ruff: noqa: S101 - the kit is a set of pytest tests; assert is how they check

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import (
    Err,
    Job,
    JobStatus,
    Ok,
    TaskQueueProtocol,
    TaskValidationError,
)

QueueFactory = Callable[[], Awaitable[TaskQueueProtocol]]
"""The type of the ``make_queue`` fixture a backend supplies."""

PROMPT_SECONDS = 5.0
"""Upper bound for anything that must happen "promptly" (a wake-up, a redelivery
after the lease). Generous on purpose: the kit checks behaviour, not speed."""


def make_job(name: str = "conformance.noop", **fields: Any) -> Job:
    """Build a small valid job for the kit (any `Job` field may be given)."""
    return Job(name=name, **fields)


async def enqueue_ok(queue: TaskQueueProtocol, job: Job) -> str:
    """Enqueue `job` and return its id, failing the test on an `Err`."""
    result = await queue.enqueue(job)
    assert isinstance(result, Ok), f"enqueue({job.name!r}) returned {result!r}, expected Ok"
    job_id = result.value
    assert isinstance(job_id, str), f"enqueue returned Ok({job_id!r}); the id must be a str"
    return job_id


def assert_validation_error(result: object, what: str) -> None:
    """Assert `result` is `Err(TaskValidationError)` (what = the job described)."""
    assert isinstance(result, Err), f"enqueue of {what} returned {result!r}, expected Err"
    assert isinstance(result.error, TaskValidationError), (
        f"enqueue of {what} returned Err({result.error!r}), expected a TaskValidationError"
    )


async def lease_one(queue: TaskQueueProtocol, within: float = PROMPT_SECONDS) -> Job:
    """Dequeue one job (waiting up to `within` seconds), failing the test if none comes."""
    job = await next_job(queue, within)
    assert job is not None, f"no job was delivered within {within:.2f}s"
    return job


async def next_job(queue: TaskQueueProtocol, within: float) -> Job | None:
    """Return the next job delivered within `within` seconds, or None.

    Loops on `dequeue_batch` so that a backend that returns early with no job (a
    spurious wake-up) is not penalised; only the total wait is bounded.
    """
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        jobs = await queue.dequeue_batch(1, timeout=remaining)
        if jobs:
            assert len(jobs) == 1, f"dequeue_batch(1) returned {len(jobs)} jobs"
            job = jobs[0]
            assert isinstance(job, Job), f"dequeue_batch returned {job!r}, not a Job"
            return job


async def drain(queue: TaskQueueProtocol) -> list[Job]:
    """Dequeue (without waiting) and ack every ready job; return them in order."""
    jobs: list[Job] = []
    while True:
        job = await queue.dequeue()
        if job is None:
            return jobs
        jobs.append(job)
        await queue.ack(job.id)


class QueueConformanceBase:
    """Fixtures every conformance class uses; subclass a conformance class, not this.

    Fixtures:
        make_queue: Supplied by the backend (see the module docstring).
        lease_seconds: The visibility timeout `make_queue` must give its queues;
            override it in the subclass to trade speed for robustness (default 1.0).
        queue: A fresh, empty queue from `make_queue`; override only if needed.

    Attributes:
        prompt_seconds: Upper bound for what must happen promptly (a wake-up, a
            redelivery once the lease ends); it only costs time when a test fails.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]
    prompt_seconds: float = PROMPT_SECONDS

    @pytest.fixture
    def lease_seconds(self) -> float:
        """Visibility timeout in seconds for the queues `make_queue` builds."""
        return 1.0

    @pytest_asyncio.fixture
    async def queue(self, make_queue: QueueFactory) -> TaskQueueProtocol:
        """A fresh, empty queue on the test's own queue name."""
        return await make_queue()


def status_of(job: Job) -> JobStatus:
    """Return the job's status as a `JobStatus` (backends may store the plain value)."""
    return JobStatus(job.status)
