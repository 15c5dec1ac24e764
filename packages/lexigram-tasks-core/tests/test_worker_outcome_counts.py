"""Every view of a worker's counts uses the outcomes of ``lexigram_tasks_jobs_total``.

`WorkerJobStats`, `WorkerPool.get_pool_stats`, the presence record (``inspect``), the
worker's exit and status lines and the Prometheus counter count the same attempts under
the same six outcomes, and the outcomes add up to "processed". An attempt whose settle
call finds its lease gone is lost, never succeeded, retried or dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from lexigram.contracts.tasks import Job, TaskBackendSpec
from lexigram.tasks import JobHandle
from lexigram.tasks._presence import OUTCOMES, WorkerPresence, WorkerTotals, pool_totals
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli._inspect import _render
from lexigram.tasks.cli._worker_run import _status_plain, summary
from lexigram.tasks.config import RetryConfig, TaskWorkerConfig
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices, WorkerPool
from lexigram.tasks.execution._stats import WorkerJobStats
from lexigram.tasks.observability import PrometheusObserver

FAST = RetryConfig(initial_delay=0.01, max_delay=0.01, jitter=0.0)


def metric_outcomes(registry: CollectorRegistry) -> dict[str, int]:
    """``lexigram_tasks_jobs_total`` summed over tasks and queues, by outcome."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for metric in registry.collect():
        if metric.name != "lexigram_tasks_jobs":
            continue
        for sample in metric.samples:
            if sample.name == "lexigram_tasks_jobs_total":
                counts[sample.labels["outcome"]] += int(sample.value)
    return counts


def stats_outcomes(stats: WorkerJobStats) -> dict[str, int]:
    counts = stats.outcome_counts()
    assert list(counts) == list(OUTCOMES)
    assert sum(counts.values()) == stats.jobs_processed, counts
    return counts


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            msg = "timed out"
            raise AssertionError(msg)
        await asyncio.sleep(0.01)


# -- a lease found gone at settle time -------------------------------------------------


class LeaseGoneOnce(MemoryTaskQueue):
    """The first settle call of each job finds its lease gone, as after an expiry.

    The job goes back to the queue (its lease ran out; another delivery takes it) and
    the call answers False, as a backend does for a stale lease token.
    """

    def __init__(self) -> None:
        super().__init__(queue_name="jobs", visibility_timeout=30.0)
        self.refused: set[str] = set()

    async def _gone(self, job_id: str, token: str | None) -> bool:
        if job_id in self.refused:
            return False
        self.refused.add(job_id)
        await super().nack(job_id, requeue=True, lease_token=token)
        return True

    async def ack(self, task_id: str, *, lease_token: str | None = None) -> bool:
        if await self._gone(task_id, lease_token):
            return False
        return await super().ack(task_id, lease_token=lease_token)

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> bool:
        if await self._gone(task.id, task.lease_token):
            return False
        return await super().retry_later(task, delay=delay)


async def _run_lease_gone(handler: Any, max_retries: int) -> tuple[WorkerJobStats, dict[str, int]]:
    queue = LeaseGoneOnce()
    registry = CollectorRegistry()
    worker = TaskWorker(
        "w1",
        queue,
        {"job": handler},
        TaskWorkerConfig(poll_interval=0.01, retry=FAST),
        TaskWorkerServices(observers=[PrometheusObserver(registry)]),
    )
    (await queue.enqueue(Job(name="job", max_retries=max_retries))).unwrap()
    await worker.start()
    try:
        await until(lambda: worker.stats.jobs_processed == 2)
        await asyncio.sleep(0.05)  # nothing more is counted
    finally:
        await worker.stop()
    return worker.stats, metric_outcomes(registry)


async def test_a_success_whose_ack_finds_the_lease_gone_is_lost_and_counted_once() -> None:
    async def ok() -> str:
        return "ok"

    stats, metric = await _run_lease_gone(ok, 0)
    counts = stats_outcomes(stats)
    # The first run's ack was refused (lost); the redelivery's held (succeeded): the job
    # succeeded once, not twice.
    assert counts == {**dict.fromkeys(OUTCOMES, 0), "succeeded": 1, "lost": 1}
    assert counts == metric
    assert stats.jobs_failed == 0


async def test_a_retry_whose_retry_later_finds_the_lease_gone_is_lost_not_retried() -> None:
    runs = 0

    async def flaky() -> str:
        nonlocal runs
        runs += 1
        if runs == 1:
            msg = "first run fails"
            raise RuntimeError(msg)
        return "ok"

    stats, metric = await _run_lease_gone(flaky, 3)
    counts = stats_outcomes(stats)
    assert counts == {**dict.fromkeys(OUTCOMES, 0), "succeeded": 1, "lost": 1}
    assert counts == metric
    assert (stats.jobs_failed, stats.jobs_retried) == (0, 0)


async def test_a_dead_letter_whose_ack_finds_the_lease_gone_is_lost_not_dead_lettered() -> None:
    async def boom() -> None:
        msg = "always"
        raise ValueError(msg)

    stats, metric = await _run_lease_gone(boom, 0)
    counts = stats_outcomes(stats)
    assert counts == {**dict.fromkeys(OUTCOMES, 0), "dead_lettered": 1, "lost": 1}
    assert counts == metric
    assert stats.jobs_failed == 1


async def test_a_dead_letter_that_cannot_be_written_is_retried_and_counted_so() -> None:
    """The worker schedules a retry instead: counted and reported as "retried"."""

    class BrokenDLQ(DeadLetterQueue):
        def add(self, job: Job, error: str, traceback: str | None = None, **metadata: Any) -> None:
            msg = "dlq storage down"
            raise OSError(msg)

    async def boom() -> None:
        msg = "always"
        raise ValueError(msg)

    queue = MemoryTaskQueue(queue_name="jobs")
    registry = CollectorRegistry()
    worker = TaskWorker(
        "w1",
        queue,
        {"boom": boom},
        TaskWorkerConfig(poll_interval=0.01, retry=RetryConfig(max_delay=60.0)),
        TaskWorkerServices(dead_letter_queue=BrokenDLQ(), observers=[PrometheusObserver(registry)]),
    )
    (await queue.enqueue(Job(name="boom", max_retries=0))).unwrap()
    await worker.start()
    try:
        await until(lambda: worker.stats.jobs_processed == 1)
    finally:
        await worker.stop()
    counts = stats_outcomes(worker.stats)
    assert counts == {**dict.fromkeys(OUTCOMES, 0), "retried": 1}
    assert counts == metric_outcomes(registry)


# -- cancelled, released and lost attempts count in processed ----------------------------


class Handlers:
    """One handler per outcome; the waiting ones wait until the test ends them."""

    def __init__(self) -> None:
        self.started = {"slow": asyncio.Event(), "deleted": asyncio.Event()}
        self.started["stopped"] = asyncio.Event()
        self.flaky_runs = 0

    def mapping(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "flaky": self.flaky,
            "boom": self.boom,
            "slow": self.slow,
            "deleted": self.deleted,
            "stopped": self.stopped,
        }

    async def ok(self) -> str:
        return "ok"

    async def flaky(self) -> str:
        self.flaky_runs += 1
        if self.flaky_runs == 1:
            msg = "first run fails"
            raise RuntimeError(msg)
        return "ok"

    async def boom(self) -> None:
        msg = "always"
        raise ValueError(msg)

    async def wait(self, name: str) -> None:
        self.started[name].set()
        await asyncio.sleep(30)

    async def slow(self) -> None:
        await self.wait("slow")

    async def deleted(self) -> None:
        await self.wait("deleted")

    async def stopped(self) -> None:
        await self.wait("stopped")


async def test_every_ended_attempt_counts_in_processed_under_the_metrics_outcome() -> None:
    """Succeeded, retried, dead-lettered, cancelled, lost and released: as /metrics."""
    # A short lease: the heartbeat finds the deleted job's lease gone within 0.1 s.
    queue = MemoryTaskQueue(queue_name="jobs", visibility_timeout=0.3)
    registry = CollectorRegistry()
    handlers = Handlers()
    pool = WorkerPool(
        queue,
        handlers.mapping(),
        size=1,
        config=TaskWorkerConfig(
            poll_interval=0.01, shutdown_timeout=0.2, max_concurrent_tasks=10, retry=FAST
        ),
        services=TaskWorkerServices(observers=[PrometheusObserver(registry)]),
    )
    for name, retries in (("ok", 0), ("flaky", 3), ("boom", 0)):
        (await queue.enqueue(Job(name=name, max_retries=retries))).unwrap()
    slow_job, deleted_job = Job(name="slow"), Job(name="deleted")
    for job in (slow_job, deleted_job, Job(name="stopped")):
        (await queue.enqueue(job)).unwrap()
    await pool.start()
    [worker] = pool.workers
    try:
        await until(lambda: all(event.is_set() for event in handlers.started.values()))
        assert await JobHandle(queue, slow_job.id).cancel() is not None  # cancelled
        assert await queue.delete_job(deleted_job.id)  # its lease is gone: lost
        await until(lambda: worker.stats.jobs_processed == 6)
    finally:
        await pool.stop(drain=True, timeout=0.2)  # "stopped" is released
    counts = stats_outcomes(worker.stats)
    assert counts == {
        "succeeded": 2,
        "retried": 1,
        "dead_lettered": 1,
        "cancelled": 1,
        "released": 1,
        "lost": 1,
    }
    assert counts == metric_outcomes(registry)
    assert worker.stats.jobs_processed == 7
    # "failed" stays the failed attempts, retried + dead_lettered.
    assert worker.stats.jobs_failed == 2

    pool_stats = pool.get_pool_stats()
    assert {outcome: pool_stats[f"total_jobs_{outcome}"] for outcome in OUTCOMES} == counts
    assert pool_stats["total_jobs_processed"] == 7
    assert pool_stats["total_jobs_failed"] == 2

    totals = pool_totals([pool])
    assert totals.outcome_counts() == counts
    assert totals.processed == 7

    class Cache:
        async def set(self, key: str, value: str, ttl: float | None = None) -> None:
            self.value = value

    cache = Cache()
    presence = WorkerPresence(cache, pools=lambda: [pool], queues=["jobs"], backend="memory")  # type: ignore[arg-type]
    await presence.beat()
    record = json.loads(cache.value)
    assert {outcome: record[outcome] for outcome in OUTCOMES} == counts
    assert (record["processed"], record["failed"]) == (7, 2)


# -- the exit line, the status line and inspect --------------------------------------


TOTALS = WorkerTotals(
    processed=7,
    succeeded=2,
    failed=2,
    retried=1,
    dead_lettered=1,
    in_flight=0,
    cancelled=1,
    released=1,
    lost=1,
)


def test_the_exit_line_names_the_outcomes_that_add_up_to_processed() -> None:
    assert summary(TOTALS) == (
        "7 processed: 2 succeeded, 1 retried, 1 dead_lettered, 1 cancelled, 1 released, 1 lost"
    )
    assert "failed" not in summary(TOTALS)


def test_the_plain_status_line_names_the_same_outcomes() -> None:
    assert _status_plain(TOTALS, 1.5) == (
        "processed=7 succeeded=2 retried=1 dead_lettered=1 cancelled=1 released=1 lost=1 "
        "in_flight=0 rate=1.5/s"
    )


def test_inspect_shows_each_worker_s_attempts_by_outcome(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    record = {
        "id": "web-1:4242",
        "queues": ["jobs"],
        "processed": 3,
        "succeeded": 2,
        "retried": 1,
        "dead_lettered": 0,
        "cancelled": 0,
        "released": 0,
        "lost": 0,
        "failed": 1,
        "in_flight": 0,
        "started_at": time.time(),
        "seen_at": time.time(),
    }
    report = {
        "backend": {"type": "redis", "url": "redis (redis://localhost:6379/0)"},
        "queues": [],
        "workers": [record],
        "schedules": None,
        "dead_letters": 0,
    }
    _render(report, TaskBackendSpec(type="redis", url="redis://localhost:6379/0"))
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "processed" in line)
    row = next(line for line in out.splitlines() if "web-1:4242" in line)
    columns = [c.strip() for c in header.strip("┃│ ").split("┃")]
    cells = [c.strip() for c in row.strip("┃│ ").split("│")]
    shown = dict(zip(columns, cells, strict=True))
    assert [shown[name] for name in ("processed", *OUTCOMES)] == ["3", "2", "1", "0", "0", "0", "0"]
    assert "failed" not in shown
