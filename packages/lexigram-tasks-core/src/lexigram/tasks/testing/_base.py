"""Fixtures and helpers shared by every conformance class.

A backend supplies one fixture, ``make_queue``: an async factory returning a queue
object on the test's own underlying queue (same queue name, empty at the start of the
test, lease ``lease_seconds``). Calling it twice must give two handles on the SAME
queue (two consumers, as two worker processes would have); a backend that lives in
one process (memory) may return the same object each time. The fixture owns cleanup:
it closes what it created and removes the queue's data, and must tolerate queues the
kit already closed.
"""

# ruff: noqa: S101 - the kit is a set of pytest tests; assert is how they check

from __future__ import annotations

import asyncio
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
"""How long the kit waits for something that must happen before it gives up on it.

It only costs time when a test fails; the timing promises themselves are the margins
below, which a backend may widen explicitly."""

WAKE_MARGIN = 0.1
"""Default `QueueConformanceBase.wake_margin`, in seconds."""

DUE_MARGIN = 0.5
"""Default `QueueConformanceBase.due_margin`, in seconds."""

REDELIVERY_MARGIN = 1.0
"""Default `QueueConformanceBase.redelivery_margin`, in seconds."""

CLOCK_TOLERANCE = 0.2
"""How much earlier than its time the kit accepts a delayed job or a redelivery.

A networked backend may judge time by the server's clock, which can run slightly
ahead of the test's."""


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
        await queue.ack(job.id, lease_token=job.lease_token)


async def outlive_lease(lease_seconds: float) -> None:
    """Sleep until a lease taken now has certainly run out (nobody dequeues meanwhile)."""
    await asyncio.sleep(lease_seconds + CLOCK_TOLERANCE)


def token_of(job: Job) -> str:
    """Return the job's lease token, failing the test if the backend set none."""
    token = job.lease_token
    assert isinstance(token, str), (
        f"job {job.id} was delivered with lease_token={token!r}; every dequeue must set "
        "Job.lease_token to a str naming that delivery"
    )
    assert token, f"job {job.id} was delivered with an empty lease_token"
    return token


def detached(job: Job) -> Job:
    """A copy of `job` with its lease token, as a worker in another process would hold.

    An in-process backend may hand out its own object; the kit works on copies so that
    what it checks is what the backend stored, not a shared object.
    """
    copy = Job.from_dict(job.to_dict())
    copy.lease_token = job.lease_token
    return copy


class QueueConformanceBase:
    """Fixtures every conformance class uses; subclass a conformance class, not this.

    Fixtures:
        make_queue: Supplied by the backend (see the module docstring).
        lease_seconds: The visibility timeout `make_queue` must give its queues;
            override it in the subclass to trade speed for robustness (default 1.0).
        queue: A fresh, empty queue from `make_queue`; override only if needed.

    Attributes:
        prompt_seconds: How long the kit waits for what must happen before it fails
            the test; it only costs time when a test fails.
        wake_margin: Seconds within which a `dequeue_batch` blocked on an empty queue
            returns a job that another queue object enqueued or requeued (at least
            four wake-ups out of five must make it). Default 0.1.
        due_margin: Seconds after its `scheduled_at` (or a retry's delay) within
            which a blocked `dequeue_batch` returns a delayed job. Default 0.5.
        redelivery_margin: Seconds after its lease ran out within which an expired
            delivery is handed out again. Default 1.0.

    A backend that cannot keep a margin widens it explicitly in its subclass (for
    example ``wake_margin = 2.0`` for a service polled every second) and documents
    it: the margin is what its users wait, at worst, for an idle worker to start a
    job.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]
    prompt_seconds: float = PROMPT_SECONDS
    wake_margin: float = WAKE_MARGIN
    due_margin: float = DUE_MARGIN
    redelivery_margin: float = REDELIVERY_MARGIN

    @pytest.fixture
    def lease_seconds(self) -> float:
        """Lease length in seconds for the queues `make_queue` builds."""
        return 1.0

    @pytest_asyncio.fixture
    async def queue(self, make_queue: QueueFactory) -> TaskQueueProtocol:
        """A fresh, empty queue on the test's own queue name."""
        return await make_queue()


def status_of(job: Job) -> JobStatus:
    """Return the job's status as a `JobStatus` (backends may store the plain value)."""
    return JobStatus(job.status)
