"""`PrometheusObserver`: a real `TaskWorker` on the memory backend, read from a real registry."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import time
from functools import partial
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from lexigram.contracts.tasks import Job, JobStatus, TaskConfigurationError
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli._metrics import _port_error
from lexigram.tasks.config import RetryConfig, TaskConfig, TaskWorkerConfig
from lexigram.tasks.events import (
    CANCELLED,
    COMPLETED,
    FAILED,
    RETRYING,
    STARTED,
    EventStream,
    JobEvent,
)
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.observability import PrometheusObserver
from lexigram.tasks.observability._prometheus_processes import (
    ProcessesCollector,
    snapshot_path,
    write_snapshot,
)

FAST_RETRIES = TaskWorkerConfig(retry=RetryConfig(initial_delay=0.001, max_delay=0.001))


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def wait_for_count(registry: CollectorRegistry, total: float) -> None:
    async def reached() -> None:
        while True:
            counted = sum(
                sample.value
                for metric in registry.collect()
                if metric.name == "lexigram_tasks_jobs"
                for sample in metric.samples
                if sample.name == "lexigram_tasks_jobs_total"
            )
            if counted >= total:
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(reached(), 10)


@pytest.mark.parametrize("watched", [False, True], ids=["from-events", "running-watched"])
async def test_counts_durations_waits_and_in_progress_after_a_real_worker_run(
    watched: bool,
) -> None:
    """The same figures whether in-progress comes from events or is read on scrape (CLI)."""
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry)
    calls: dict[str, int] = {}

    async def ok(n: int) -> int:
        await asyncio.sleep(0.01)
        return n

    async def flaky(key: str) -> str:
        calls[key] = calls.get(key, 0) + 1
        if calls[key] == 1:
            msg = "first attempt fails"
            raise RuntimeError(msg)
        return key

    async def bad() -> None:
        msg = "always fails"
        raise ValueError(msg)

    queue = MemoryTaskQueue(queue_name="metrics")
    worker = TaskWorker(
        "w1",
        queue,
        {"ok": ok, "flaky": flaky, "bad": bad},
        FAST_RETRIES,
        TaskWorkerServices(observers=[metrics]),
    )
    if watched:
        metrics.watch_running(lambda: [(job.name, "metrics") for job in worker.running_jobs()])
    jobs = [Job(name="ok", args=(i,)) for i in range(5)]
    jobs += [Job(name="flaky", args=(f"k{i}",), max_retries=2) for i in range(2)]
    jobs += [Job(name="bad", max_retries=1) for _ in range(3)]
    for job in jobs:
        (await queue.enqueue(job)).unwrap()
    await worker.start()
    metrics.watch_queues([queue])
    # 5 ok + 2 flaky x (retry, success) + 3 bad x (retry, dead letter) = 15 outcomes
    await wait_for_count(registry, 15)
    await worker.stop()

    def jobs_total(task: str, outcome: str) -> float:
        labels = {"task": task, "queue": "metrics", "outcome": outcome}
        return value(registry, "lexigram_tasks_jobs_total", **labels)

    assert jobs_total("ok", "succeeded") == 5
    assert jobs_total("flaky", "retried") == 2
    assert jobs_total("flaky", "succeeded") == 2
    assert jobs_total("bad", "retried") == 3
    assert jobs_total("bad", "dead_lettered") == 3
    assert jobs_total("ok", "dead_lettered") == 0
    ok_labels = {"task": "ok", "queue": "metrics"}
    assert value(registry, "lexigram_tasks_job_duration_seconds_count", **ok_labels) == 5
    assert value(registry, "lexigram_tasks_job_duration_seconds_sum", **ok_labels) >= 0.05
    bad_labels = {"task": "bad", "queue": "metrics"}
    assert value(registry, "lexigram_tasks_job_duration_seconds_count", **bad_labels) == 6
    # the queue wait is taken from the first attempt only
    assert value(registry, "lexigram_tasks_queue_wait_seconds_count", **bad_labels) == 3
    flaky_labels = {"task": "flaky", "queue": "metrics"}
    assert value(registry, "lexigram_tasks_queue_wait_seconds_count", **flaky_labels) == 2
    assert value(registry, "lexigram_tasks_job_duration_seconds_count", **flaky_labels) == 4
    for task in ("ok", "flaky", "bad"):
        labels = {"task": task, "queue": "metrics"}
        assert value(registry, "lexigram_tasks_jobs_in_progress", **labels) == 0
    assert await metrics.refresh_depths() == {"metrics": 0.0}
    text = generate_latest(registry).decode()
    assert 'lexigram_tasks_queue_depth{queue="metrics"} 0.0' in text
    assert "# TYPE lexigram_tasks_jobs_total counter" in text


async def test_in_progress_counts_a_running_job_and_a_depth_read_from_another_thread() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry, depth_interval=0.0)
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await release.wait()

    queue = MemoryTaskQueue(queue_name="busy")
    one_at_a_time = TaskWorkerConfig(max_concurrent_tasks=1)
    services = TaskWorkerServices(observers=[metrics])
    worker = TaskWorker("w1", queue, {"slow": slow}, one_at_a_time, services)
    (await queue.enqueue(Job(name="slow"))).unwrap()
    for _ in range(3):
        (await queue.enqueue(Job(name="slow"))).unwrap()  # wait: one job runs at a time
    await worker.start()
    await asyncio.wait_for(started.wait(), 5)
    labels = {"task": "slow", "queue": "busy"}
    assert value(registry, "lexigram_tasks_jobs_in_progress", **labels) == 1
    metrics.watch_queues([queue])
    # A scrape runs in the HTTP server's thread: the depth is read on the queue's loop.
    text = (await asyncio.to_thread(generate_latest, registry)).decode()
    pending = await queue.count("busy", JobStatus.PENDING)
    assert pending >= 2
    assert f'lexigram_tasks_queue_depth{{queue="busy"}} {float(pending)}' in text
    release.set()
    await wait_for_count(registry, 4)
    await worker.stop()
    assert value(registry, "lexigram_tasks_jobs_in_progress", **labels) == 0


async def test_queue_depth_counts_waiting_jobs_not_those_in_flight() -> None:
    # The gauge is documented as the jobs waiting: a leased job is not one of them,
    # while a delayed one and one awaiting a retry are.
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry, depth_interval=0.0)
    queue = MemoryTaskQueue(queue_name="depth")
    for _ in range(3):
        (await queue.enqueue(Job(name="work"))).unwrap()
    metrics.watch_queues([queue])
    assert await metrics.refresh_depths() == {"depth": 3.0}
    leased = await queue.dequeue()
    assert leased is not None
    assert await queue.count("depth") == 3  # waiting + in flight
    assert await metrics.refresh_depths() == {"depth": 2.0}
    (await queue.enqueue(Job(name="later", scheduled_at=time.time() + 3600))).unwrap()
    assert await metrics.refresh_depths() == {"depth": 3.0}
    leased.retry_count += 1
    assert await queue.retry_later(leased, delay=3600.0)
    assert await queue.count("depth", JobStatus.RETRYING) == 1
    assert await metrics.refresh_depths() == {"depth": 4.0}
    text = (await asyncio.to_thread(generate_latest, registry)).decode()
    assert 'lexigram_tasks_queue_depth{queue="depth"} 4.0' in text


def test_event_loop_lag_is_whatever_the_source_says() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry)
    lag = [0.25]
    metrics.watch_loop_lag(lambda: lag[0])
    assert value(registry, "lexigram_tasks_event_loop_lag_seconds") == 0.25
    lag[0] = 0.0
    assert value(registry, "lexigram_tasks_event_loop_lag_seconds") == 0.0


def test_a_terminal_event_without_a_start_does_not_drive_in_progress_below_zero() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry)
    metrics.observe(JobEvent(kind=RETRYING, task="t", job_id="j", queue="q", duration=0.1))
    assert value(registry, "lexigram_tasks_jobs_in_progress", task="t", queue="q") == 0
    assert value(registry, "lexigram_tasks_jobs_total", task="t", queue="q", outcome="retried") == 1


async def test_cost_per_event_through_the_stream() -> None:
    """Micro-benchmark: events per second through `observe` (printed with -s)."""
    metrics = PrometheusObserver(CollectorRegistry())
    stream = EventStream([metrics])
    now = time.time()
    events = []
    for i in range(2000):
        build = partial(JobEvent, task=f"t{i % 5}", job_id=f"j{i}", queue="q", worker_id="w")
        events.append(build(kind=STARTED, attempt=1, enqueued_at=now, started_at=now))
        events.append(build(kind=COMPLETED, attempt=1, duration=0.01))
    began = time.perf_counter()
    for event in events:
        metrics.observe(event)
    direct = len(events) / (time.perf_counter() - began)
    began = time.perf_counter()
    for event in events:
        await stream.observe(event)
    through_stream = len(events) / (time.perf_counter() - began)
    print(f"PrometheusObserver: {direct:,.0f} events/s direct, {through_stream:,.0f} via stream")  # noqa: T201
    assert (
        value(
            metrics.registry, "lexigram_tasks_jobs_total", task="t0", queue="q", outcome="succeeded"
        )
        == 2 * 400
    )


def test_worker_metrics_port_config_field() -> None:
    assert TaskWorkerConfig().metrics_port is None
    config = TaskConfig.from_dict({"worker": {"metrics_port": "9108"}})
    assert config.effective_worker().metrics_port == 9108
    with pytest.raises(TaskConfigurationError, match="metrics_port"):
        TaskConfig.from_dict({"worker": {"metrics_port": 70000}})


async def test_two_observers_of_one_registry_are_served_summed() -> None:
    registry = CollectorRegistry()
    first, second = PrometheusObserver(registry), PrometheusObserver(registry)
    for metrics, outcome in ((first, COMPLETED), (second, COMPLETED), (second, RETRYING)):
        metrics.observe(JobEvent(kind=STARTED, task="t", job_id="j", queue="q"))
        metrics.observe(JobEvent(kind=outcome, task="t", job_id="j", queue="q", duration=0.2))
    labels = {"task": "t", "queue": "q"}
    assert value(registry, "lexigram_tasks_jobs_total", outcome="succeeded", **labels) == 2
    assert value(registry, "lexigram_tasks_jobs_total", outcome="retried", **labels) == 1
    assert value(registry, "lexigram_tasks_job_duration_seconds_count", **labels) == 3
    assert value(registry, "lexigram_tasks_jobs_in_progress", **labels) == 0
    first.watch_loop_lag(lambda: 0.1)
    second.watch_loop_lag(lambda: 0.3)
    assert value(registry, "lexigram_tasks_event_loop_lag_seconds") == 0.3
    first.watch_queues([MemoryTaskQueue(queue_name="a")])
    second.watch_queues([MemoryTaskQueue(queue_name="b")])
    text = (await asyncio.to_thread(generate_latest, registry)).decode()
    assert 'lexigram_tasks_queue_depth{queue="a"} 0.0' in text
    assert 'lexigram_tasks_queue_depth{queue="b"} 0.0' in text
    assert text.count("# TYPE lexigram_tasks_jobs_total counter") == 1


def test_observers_of_one_registry_need_the_same_buckets() -> None:
    registry = CollectorRegistry()
    PrometheusObserver(registry, buckets=(0.1, 1.0))
    with pytest.raises(TaskConfigurationError, match="same buckets"):
        PrometheusObserver(registry, buckets=(0.5,))
    # Metrics of the same names from elsewhere still collide, as prometheus-client says.
    other = CollectorRegistry()
    Counter("lexigram_tasks_jobs", "foreign", registry=other)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusObserver(other)


def test_observers_on_the_default_registry_do_not_collide() -> None:
    """As when `lexigram-tasks worker --metrics-port` runs twice in one process."""
    PrometheusObserver()
    PrometheusObserver()


async def test_the_supervisor_sums_snapshots_and_keeps_exited_processes_counts(
    tmp_path: Path,
) -> None:
    child = PrometheusObserver(CollectorRegistry())
    child.observe(JobEvent(kind=STARTED, task="t", job_id="a", queue="q"))
    child.observe(JobEvent(kind=COMPLETED, task="t", job_id="a", queue="q", duration=0.1))
    child.observe(JobEvent(kind=STARTED, task="t", job_id="b", queue="q"))  # still running
    child.watch_loop_lag(lambda: 0.2)
    await write_snapshot(child, tmp_path)
    # The same figures as written by a process that has exited (no such pid).
    live = json.loads(snapshot_path(tmp_path).read_text())
    exited = {**live, "pid": 2**22 + 12345, "lag": 9.0}
    snapshot_path(tmp_path, exited["pid"]).write_text(json.dumps(exited))
    (tmp_path / "worker-1.json").write_text("{half a fil")  # skipped, with a warning
    registry = CollectorRegistry()
    registry.register(ProcessesCollector(tmp_path))
    labels = {"task": "t", "queue": "q"}
    assert value(registry, "lexigram_tasks_jobs_total", outcome="succeeded", **labels) == 2
    assert value(registry, "lexigram_tasks_job_duration_seconds_count", **labels) == 2
    assert value(registry, "lexigram_tasks_jobs_in_progress", **labels) == 1  # live only
    assert value(registry, "lexigram_tasks_event_loop_lag_seconds") == 0.2  # live only


def test_a_job_cancelled_while_running_counts_as_cancelled_and_leaves_in_progress() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry)
    metrics.observe(JobEvent(kind=STARTED, task="t", job_id="j", queue="q", worker_id="w"))
    assert value(registry, "lexigram_tasks_jobs_in_progress", task="t", queue="q") == 1
    metrics.observe(
        JobEvent(kind=CANCELLED, task="t", job_id="j", queue="q", worker_id="w", duration=0.1)
    )
    assert value(registry, "lexigram_tasks_jobs_in_progress", task="t", queue="q") == 0
    labels = {"task": "t", "queue": "q", "outcome": "cancelled"}
    assert value(registry, "lexigram_tasks_jobs_total", **labels) == 1


async def test_with_the_running_jobs_watched_in_progress_is_read_on_scrape_without_started() -> (
    None
):
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry)
    release = asyncio.Event()
    both_started = asyncio.Event()
    calls: list[None] = []

    async def slow() -> None:
        calls.append(None)
        if len(calls) == 2:
            both_started.set()
        await release.wait()

    queue = MemoryTaskQueue(queue_name="watched")
    services = TaskWorkerServices(observers=[metrics])
    worker = TaskWorker("w1", queue, {"slow": slow}, TaskWorkerConfig(), services)
    metrics.watch_running(lambda: [(job.name, "watched") for job in worker.running_jobs()])
    assert STARTED not in metrics.event_kinds
    assert not worker.events.listening_to(STARTED)  # no "started" event is built
    for _ in range(2):
        (await queue.enqueue(Job(name="slow"))).unwrap()
    await worker.start()
    await asyncio.wait_for(both_started.wait(), 5)
    labels = {"task": "slow", "queue": "watched"}
    assert value(registry, "lexigram_tasks_jobs_in_progress", **labels) == 2
    release.set()
    await wait_for_count(registry, 2)
    await worker.stop()
    assert value(registry, "lexigram_tasks_jobs_in_progress", **labels) == 0
    assert value(registry, "lexigram_tasks_queue_wait_seconds_count", **labels) == 2
    assert value(registry, "lexigram_tasks_job_duration_seconds_count", **labels) == 2


def test_with_running_watched_the_wait_is_the_first_attempts_taken_at_its_end() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry)
    metrics.watch_running(list)
    build = partial(JobEvent, task="t", queue="q", enqueued_at=100.0, started_at=100.5)
    metrics.observe(build(kind=RETRYING, job_id="a", attempt=1, duration=0.1))
    metrics.observe(build(kind=COMPLETED, job_id="a", attempt=2, duration=0.1))
    metrics.observe(build(kind=FAILED, job_id="b", attempt=1, reason="unknown_task"))  # never ran
    labels = {"task": "t", "queue": "q"}
    assert value(registry, "lexigram_tasks_queue_wait_seconds_count", **labels) == 1
    assert value(registry, "lexigram_tasks_queue_wait_seconds_sum", **labels) == 0.5
    assert value(registry, "lexigram_tasks_job_duration_seconds_count", **labels) == 2
    assert value(registry, "lexigram_tasks_jobs_total", outcome="dead_lettered", **labels) == 1


async def test_watching_running_jobs_replaces_the_in_progress_counted_from_events(
    tmp_path: Path,
) -> None:
    child = PrometheusObserver(CollectorRegistry())
    times = {"attempt": 1, "enqueued_at": 100.0, "started_at": 100.5}
    child.observe(JobEvent(kind=STARTED, task="t", job_id="a", queue="q", **times))  # type: ignore[arg-type]
    running = [("t", "q"), ("t", "q"), ("u", "q")]
    child.watch_running(lambda: running)
    labels = {"task": "t", "queue": "q"}
    assert value(child.registry, "lexigram_tasks_jobs_in_progress", **labels) == 2
    assert value(child.registry, "lexigram_tasks_jobs_in_progress", task="u", queue="q") == 1
    await write_snapshot(child, tmp_path)  # what a supervised child hands its supervisor
    supervisor = CollectorRegistry()
    supervisor.register(ProcessesCollector(tmp_path))
    assert value(supervisor, "lexigram_tasks_jobs_in_progress", **labels) == 2
    running.clear()
    assert value(child.registry, "lexigram_tasks_jobs_in_progress", **labels) == 0
    # Until the job from before the watch ends, completed jobs come as events (to close it).
    assert COMPLETED in child.event_kinds
    # The job that started before the watch ends: its wait, taken at its start, stays one.
    child.observe(JobEvent(kind=COMPLETED, task="t", job_id="a", queue="q", **times))  # type: ignore[arg-type]
    assert value(child.registry, "lexigram_tasks_queue_wait_seconds_count", **labels) == 1
    assert COMPLETED not in child.event_kinds  # from now on as figures (count_completed)
    assert STARTED not in child.event_kinds
    # A job started after the watch: its wait is taken when its first attempt ends.
    child.observe(JobEvent(kind=COMPLETED, task="t", job_id="b", queue="q", **times))  # type: ignore[arg-type]
    assert value(child.registry, "lexigram_tasks_queue_wait_seconds_count", **labels) == 2
    assert value(child.registry, "lexigram_tasks_jobs_total", outcome="succeeded", **labels) == 2


def test_a_started_event_after_the_watch_still_takes_its_wait_once() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry)
    metrics.watch_running(list)
    times = {"attempt": 1, "enqueued_at": 100.0, "started_at": 100.25}
    # Handed a "started" event directly (the stream no longer routes one to it).
    metrics.observe(JobEvent(kind=STARTED, task="t", job_id="a", queue="q", **times))  # type: ignore[arg-type]
    metrics.observe(JobEvent(kind=COMPLETED, task="t", job_id="a", queue="q", **times))  # type: ignore[arg-type]
    metrics.observe(JobEvent(kind=COMPLETED, task="t", job_id="b", queue="q", **times))  # type: ignore[arg-type]
    labels = {"task": "t", "queue": "q"}
    assert value(registry, "lexigram_tasks_queue_wait_seconds_count", **labels) == 2
    assert value(registry, "lexigram_tasks_queue_wait_seconds_sum", **labels) == 0.5


async def test_with_running_watched_the_worker_builds_no_event_for_a_completed_job(
    built_event_kinds: list[str],
) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry)

    async def ok() -> None:
        return None

    async def bad() -> None:
        msg = "always fails"
        raise ValueError(msg)

    queue = MemoryTaskQueue(queue_name="figures")
    services = TaskWorkerServices(observers=[metrics])
    worker = TaskWorker("w1", queue, {"ok": ok, "bad": bad}, FAST_RETRIES, services)
    metrics.watch_running(lambda: [(job.name, "figures") for job in worker.running_jobs()])
    assert worker.events.completion_listeners() == ((metrics.count_completed,), False)
    assert not worker.events.listening_to(COMPLETED)
    for _ in range(4):
        (await queue.enqueue(Job(name="ok"))).unwrap()
    (await queue.enqueue(Job(name="bad", max_retries=0))).unwrap()
    await worker.start()
    await wait_for_count(registry, 5)
    await worker.stop()
    # The dead letter's event; none for the four that succeeded.
    assert built_event_kinds == [FAILED]
    labels = {"task": "ok", "queue": "figures"}
    assert value(registry, "lexigram_tasks_jobs_total", outcome="succeeded", **labels) == 4
    assert value(registry, "lexigram_tasks_job_duration_seconds_count", **labels) == 4
    assert value(registry, "lexigram_tasks_queue_wait_seconds_count", **labels) == 4
    bad_labels = {"task": "bad", "queue": "figures"}
    assert value(registry, "lexigram_tasks_jobs_total", outcome="dead_lettered", **bad_labels) == 1


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.EADDRINUSE, "pick a free port."),
        (errno.EACCES, "pick a port above 1023"),
        (errno.EADDRNOTAVAIL, "check --metrics-host: an address of this machine"),
    ],
)
def test_a_metrics_port_that_cannot_be_served_says_what_to_change(code: int, fix: str) -> None:
    message = _port_error(9108, "10.9.9.9", OSError(code, os.strerror(code))).message
    assert message.startswith(
        f"metrics port 9108: cannot listen on 10.9.9.9:9108 ({os.strerror(code)})"
    )
    assert fix in message
