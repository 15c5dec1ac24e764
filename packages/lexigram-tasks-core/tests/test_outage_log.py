"""A backend outage is reported once when it begins and once when it ends, never per attempt.

`OutageLog` itself, then the worker's loops that keep one: taking jobs, following
cancellations, the heartbeat's lease extensions (the registration's is tested with the
CLI runtime).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

import pytest

from lexigram.contracts.tasks import BackendConnectionError, CancelOutcome, Job
from lexigram.tasks import _outage
from lexigram.tasks._outage import OutageLog
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli._output import OneLineClientOutages
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.execution._heartbeat import Heartbeat
from lexigram.tasks.execution._running import Running
from lexigram.tasks.testing import HookRecorder

LOGGER = "lexigram.tests.outage"


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


class Awaited(logging.Handler):
    """Sets `seen` once a record whose message holds `text` is logged anywhere."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def recovered() -> Iterator[asyncio.Event]:
    """Set once some loop logged that it works again."""
    handler = Awaited("again after")
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.seen
    root.removeHandler(handler)


def outage_pair(caplog: pytest.LogCaptureFixture, activity: str) -> tuple[str, str]:
    """The two lines of the one outage logged for `activity`; nothing logged a traceback."""
    mine = [r for r in caplog.records if activity in r.getMessage()]
    assert [r.levelno for r in mine] == [logging.WARNING, logging.WARNING]
    assert all(r.exc_info is None for r in caplog.records)
    return mine[0].getMessage(), mine[1].getMessage()


def unreachable() -> BackendConnectionError:
    return BackendConnectionError("Redis at redis://h:6379/0 is unreachable.\nsecond line")


def test_an_outage_is_one_warning_when_it_begins_and_one_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    outage = OutageLog(logging.getLogger(LOGGER), "Worker w1", "take jobs from the queue")
    outage.succeeded()  # nothing to end
    for _ in range(5):
        outage.failed(unreachable(), 0.4)
    during = outage.in_outage
    outage.succeeded()
    assert (during, outage.in_outage) == (True, False)
    warnings = lines(caplog, logging.WARNING)
    assert warnings[0] == (
        "Worker w1 could not take jobs from the queue (BackendConnectionError: Redis at "
        "redis://h:6379/0 is unreachable.); retrying with backoff until it works again "
        "(further failures are logged at DEBUG)."
    )
    assert warnings[1].startswith("Worker w1 can take jobs from the queue again after ")
    assert warnings[1].endswith(" s (5 failed attempts).")
    assert len(warnings) == 2
    assert len(lines(caplog, logging.DEBUG)) == 4
    assert all(r.exc_info is None for r in caplog.records)


def test_a_failure_that_is_no_lost_connection_keeps_its_traceback_every_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = OutageLog(logging.getLogger(LOGGER), "Worker w1", "take jobs from the queue")
    for _ in range(2):
        try:
            missing = "job"
            raise KeyError(missing)  # noqa: TRY301 - a bug in a backend, as logged
        except KeyError as exc:
            outage.failed(exc, 0.1)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "Worker w1 could not take jobs from the queue; retrying in 0.1 s."
    ] * 2
    assert all(r.exc_info is not None for r in errors)
    assert not outage.in_outage


def test_a_failure_long_after_the_last_one_starts_a_new_outage(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(_outage, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    outage = OutageLog(logging.getLogger(LOGGER), "Worker w1", "follow job cancellations")
    outage.failed(unreachable())
    clock[0] += 1.0
    outage.failed(unreachable())  # the same outage
    clock[0] += _outage.NEW_OUTAGE_AFTER + 1.0
    outage.failed(unreachable())  # it must have worked in between
    begun = [m for m in lines(caplog, logging.WARNING) if "could not" in m]
    assert len(begun) == 2
    assert begun[0].endswith("(further failures are logged at DEBUG).")


async def test_a_worker_that_cannot_reach_its_queue_goes_on_and_says_so_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FlakyQueue(MemoryTaskQueue):
        failures = 4

        async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Job]:
            if self.failures:
                self.failures -= 1
                raise unreachable()
            return await super().dequeue_batch(max_jobs, timeout=timeout)

    caplog.set_level(logging.INFO)
    queue = FlakyQueue()
    hooks = HookRecorder()

    async def noop() -> None:
        return None

    worker = TaskWorker("w1", queue, {"noop": noop}, services=TaskWorkerServices(hooks=hooks))
    job = Job(name="noop")
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    try:
        await hooks.wait_until(lambda: job.id in hooks.ids("task.completed"))
    finally:
        await worker.stop()
    assert queue.failures == 0  # it kept trying, and ran the job once it could
    begun, ended = outage_pair(caplog, "take jobs from the queue")
    assert begun.startswith("Worker w1 could not take jobs from the queue (")
    assert "again after" in ended
    assert "(4 failed attempts)" in ended


async def test_a_lost_cancellation_subscription_is_reported_once_and_its_return_too(
    caplog: pytest.LogCaptureFixture, recovered: asyncio.Event
) -> None:
    class LosingQueue(MemoryTaskQueue):
        losses = 3

        def cancellations(self) -> AsyncIterator[str]:
            if self.losses:
                self.losses -= 1
                return self._lost()
            return self._resubscribed()

        async def _resubscribed(self) -> AsyncIterator[str]:
            subscribed.set()
            async for job_id in super().cancellations():
                yield job_id

        async def _lost(self) -> AsyncIterator[str]:
            never: tuple[str, ...] = ()
            for job_id in never:  # an async generator, as a backend's subscription is
                yield job_id
            raise unreachable()

    subscribed = asyncio.Event()
    queue = LosingQueue()
    started = asyncio.Event()

    async def endless() -> None:
        started.set()
        await asyncio.Event().wait()

    worker = TaskWorker("w1", queue, {"endless": endless})
    job = Job(name="endless")
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    try:
        async with asyncio.timeout(5):
            await started.wait()
            await subscribed.wait()
            await asyncio.sleep(0.05)
            # Held again, it says nothing until it carries an announcement.
            assert not recovered.is_set()
            assert await queue.cancel(job.id) is CancelOutcome.STOPPING
            await recovered.wait()
    finally:
        await worker.stop()
    begun, ended = outage_pair(caplog, "follow job cancellations")
    assert begun.startswith("Worker w1 could not follow job cancellations (")
    assert "(3 failed attempts)" in ended


async def test_a_heartbeat_that_cannot_extend_leases_reports_the_outage_not_each_job(
    caplog: pytest.LogCaptureFixture, recovered: asyncio.Event
) -> None:
    four_beats = asyncio.Event()

    class Unreachable(MemoryTaskQueue):
        down = True
        calls = 0

        async def extend_lease(
            self,
            task_id: str,
            extension: float | None = None,
            *,
            lease_token: str | None = None,
        ) -> bool:
            self.calls += 1
            if self.calls == 20:  # four beats of five jobs, all failed
                four_beats.set()
            if self.down:
                raise unreachable()
            return True

    queue = Unreachable()
    loop = asyncio.get_running_loop()
    in_flight = {str(n): Running(Job(id=str(n), name="slow"), loop.time() - 1) for n in range(5)}
    heartbeat = Heartbeat(
        queue,
        in_flight,
        lease_seconds=0.06,  # a beat every 0.02 s
        kept_by_keeper=lambda: False,
        lease_gone=lambda entry: None,
        reclaim=lambda entry: asyncio.sleep(0),
        logger=logging.getLogger(LOGGER),
        worker_id="w1",
    )
    beating = asyncio.create_task(heartbeat.run())
    try:
        await asyncio.wait_for(four_beats.wait(), 5)
        queue.down = False
        await asyncio.wait_for(recovered.wait(), 5)
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
    begun, _ = outage_pair(caplog, "extend the leases")
    assert begun.startswith(
        "Worker w1 could not extend the leases of its running jobs (BackendConnectionError: "
    )


def test_the_cli_prints_a_client_librarys_lost_connection_in_one_line() -> None:
    formatter = OneLineClientOutages(logging.Formatter("%(name)s: %(message)s"))

    def record(name: str, exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except type(exc):
            info = sys.exc_info()
        return logging.LogRecord(name, logging.WARNING, "f", 1, "pool floor %s", ("lost",), info)

    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    client = record("asyncpg.pool", refused)
    assert formatter.format(client) == (
        "asyncpg.pool: pool floor lost (ConnectionRefusedError: [Errno 111] Connect call "
        "failed ('127.0.0.1', 5432))"
    )
    assert client.exc_info is not None  # other handlers still get the traceback
    ours = formatter.format(record("lexigram.tasks.x", refused))
    assert "Traceback (most recent call last)" in formatter.format(record("redisish", refused))
    bug = formatter.format(record("asyncpg.pool", KeyError("k")))
    assert "Traceback (most recent call last)" in ours
    assert "Traceback (most recent call last)" in bug
