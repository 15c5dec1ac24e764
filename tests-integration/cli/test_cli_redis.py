"""The command line against a real Redis: worker processes, enqueue, inspect, DLQ, scheduler."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import Job, TaskBackendSpec
from lexigram.tasks._backends import create_store
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import release_backend
from lexigram.tasks.dlq import PersistentDeadLetterQueue

pytestmark = pytest.mark.redis

SLOW_APP = """
import asyncio
import logging

from lexigram.tasks import task

log = logging.getLogger("cli_test_app")


@task
async def slow(n: int) -> int:
    log.warning("started %s", n)
    await asyncio.sleep(1.0)  # the work the drain must let finish
    log.warning("finished %s", n)
    return n
"""

FLAKY_APP = """
from pathlib import Path

from lexigram.tasks import task


@task
async def flaky(flag: str) -> str:
    if not Path(flag).exists():
        raise RuntimeError(f"{flag} is missing")
    return "ok"
"""

CRON_APP = """
from lexigram.tasks import scheduled


@scheduled("* * * * * *", name="tick")
async def tick() -> None:
    return None
"""


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli, list(args), input=stdin)


def inspect(config: Path) -> dict:
    result = run("inspect", "--config", str(config), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def registered_workers(config: Path, timeout: float = 10.0) -> list[dict]:
    """The workers `inspect` lists, once one is there (a worker registers in the background
    as it starts, so its first jobs can start before its registration lands)."""
    deadline = time.monotonic() + timeout
    while True:
        workers = inspect(config)["workers"]
        if workers or time.monotonic() > deadline:
            return workers
        time.sleep(0.05)


def spec_of(redis_url: str, prefix: str) -> TaskBackendSpec:
    return TaskBackendSpec(
        type="redis", url=redis_url, queue_name="jobs", options={"key_prefix": prefix}
    )


async def read_results(spec: TaskBackendSpec, ids: list[str]) -> dict:
    store = create_store(spec, "create_result_store")
    try:
        return {job_id: await store.get(job_id) for job_id in ids}
    finally:
        await store.close()
        await release_backend(spec)


def test_worker_process_finishes_running_jobs_on_sigterm_and_exits_0(
    redis_config: Path, redis_url: str, redis_prefix: str, write_app, cli_process
) -> None:
    app = write_app(SLOW_APP)
    running = []
    for n in range(3):
        result = run(
            "enqueue", "slow", "--args", f"[{n}]", "-p", "high", "--config", str(redis_config)
        )
        assert result.exit_code == 0, result.output
        running.append(result.stdout.strip())
    for n in range(3, 5):
        assert (
            run(
                "enqueue", "slow", "--args", f"[{n}]", "-p", "low", "--config", str(redis_config)
            ).exit_code
            == 0
        )
    assert inspect(redis_config)["queues"][0]["waiting"] == 5

    worker = cli_process(
        "worker", app, "--config", str(redis_config), "--concurrency", "3", "--log-level", "info"
    )
    for _ in range(3):
        worker.wait_for(r"started \d")
    during = inspect(redis_config)
    assert during["queues"][0]["in_flight"] == 3
    assert during["queues"][0]["waiting"] == 2
    [registered] = registered_workers(redis_config)
    assert registered["queues"] == ["jobs"]
    assert str(worker.process.pid) in registered["id"]

    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=30) == 0
    finished = [line for line in worker.seen if "finished" in line]
    worker.wait_for(r"Received SIGTERM: draining")
    assert len(finished) + sum("finished" in line for line in worker.seen[len(worker.seen) :]) >= 0
    after = inspect(redis_config)
    assert after["queues"][0]["in_flight"] == 0
    assert after["queues"][0]["waiting"] == 2  # not taken after the signal
    assert after["workers"] == []  # unregistered on exit
    results = asyncio.run(read_results(spec_of(redis_url, redis_prefix), running))
    assert all(r is not None and r.success for r in results.values()), results
    assert sorted(r.data for r in results.values()) == [0, 1, 2]


def test_dlq_retry_moves_a_dead_lettered_job_back_and_it_completes(
    redis_config: Path, redis_url: str, redis_prefix: str, write_app, tmp_path: Path
) -> None:
    app = write_app(FLAKY_APP)
    flag = tmp_path / "flag"
    config = ["--config", str(redis_config)]
    enqueued = run(
        "enqueue", "flaky", "--args", json.dumps([str(flag)]), "--max-retries", "0", *config
    )
    assert enqueued.exit_code == 0, enqueued.output
    job_id = enqueued.stdout.strip()

    first = run("worker", app, "--burst", *config)
    assert first.exit_code == 0, first.output
    listed = run("dlq", "list", "--json", *config)
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert data["total"] == 1
    assert data["jobs"][0]["id"] == job_id
    # `total` counts what --task selects, not the whole dead-letter queue.
    other = json.loads(run("dlq", "list", "--json", "--task", "another", *config).stdout)
    assert (other["total"], other["jobs"]) == (0, [])
    assert data["jobs"][0]["task"] == "flaky"
    assert "is missing" in data["jobs"][0]["error"]
    shown = run("dlq", "show", job_id[:8], *config)  # a unique prefix, as `dlq list` shows ids
    assert shown.exit_code == 0, shown.output
    assert "RuntimeError" in shown.stdout
    assert "Traceback" in shown.stdout  # the handler's traceback, kept in the record

    flag.write_text("fixed")
    retried = run("dlq", "retry", job_id[:12], *config)
    assert retried.exit_code == 0, retried.output
    assert f"Requeued job {job_id} (flaky) on queue 'jobs'." in retried.stdout
    assert inspect(redis_config)["queues"][0]["waiting"] == 1
    assert inspect(redis_config)["dead_letters"] == 0
    # The failure its first run stored went with the retry: the job is waiting again.
    status = run("job", "status", job_id, *config)
    assert status.exit_code == 0, status.output
    assert "pending" in status.stdout

    second = run("worker", app, "--burst", *config)
    assert second.exit_code == 0, second.output
    result = asyncio.run(read_results(spec_of(redis_url, redis_prefix), [job_id]))[job_id]
    assert result is not None
    assert result.success
    assert result.data == "ok"
    assert json.loads(run("dlq", "list", "--json", *config).stdout)["total"] == 0


def test_dlq_unknown_id_is_one_line_with_exit_2(redis_config: Path) -> None:
    result = run("dlq", "retry", "no-such-job", "--config", str(redis_config))
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "No dead-lettered job has an id starting with 'no-such-job'" in line


def test_dlq_retry_all_and_purge(redis_config: Path, redis_url: str, redis_prefix: str) -> None:
    spec = spec_of(redis_url, redis_prefix)

    async def dead_letter(count: int) -> None:
        storage = create_store(spec, "create_dlq_backend")
        try:
            dlq = PersistentDeadLetterQueue(backend=storage)
            for n in range(count):
                job = Job(name="report" if n % 2 else "email", queue_name="jobs")
                await dlq.add(job, "ValueError: boom", reason="max_retries")
        finally:
            await storage.close()
            await release_backend(spec)

    asyncio.run(dead_letter(4))
    config = ["--config", str(redis_config)]
    only_reports = run("dlq", "retry-all", "--task", "report", "--yes", *config)
    assert only_reports.exit_code == 0, only_reports.output
    assert "Requeued 2 job(s)." in only_reports.stdout
    assert inspect(redis_config)["queues"][0]["waiting"] == 2
    table = run("dlq", "list", *config)
    assert "email" in table.stdout
    assert "report" not in table.stdout
    kept = run("dlq", "purge", "--older-than-hours", "1", "--yes", *config)
    assert "Deleted 0 dead-lettered job(s)." in kept.stdout
    purged = run("dlq", "purge", "--all", *config, stdin="y\n")
    assert purged.exit_code == 0, purged.output
    assert "Deleted 2 dead-lettered job(s)." in purged.stdout
    assert inspect(redis_config)["dead_letters"] == 0


def test_enqueue_delay_priority_and_idempotency_on_redis(redis_config: Path) -> None:
    config = ["--config", str(redis_config)]
    first = run("enqueue", "report", "--delay", "3600", "--idempotency-key", "daily", *config)
    again = run("enqueue", "report", "--idempotency-key", "daily", *config)
    assert first.exit_code == again.exit_code == 0
    assert first.stdout == again.stdout  # the same job: the key is held
    assert first.stderr == ""
    [note] = again.stderr.splitlines()
    held = first.stdout.strip()
    assert note.startswith(f"note: the idempotency key 'daily' is held by job {held}, so ")
    assert "nothing new was enqueued" in note
    twice = run("enqueue", "report", "--idempotency-key", "daily", "--json", *config)
    assert json.loads(twice.stdout)["duplicate"] is True
    other = run("enqueue", "report", "-q", "other", "-p", "critical", *config)
    assert other.exit_code == 0
    report = run("inspect", "-q", "jobs", "-q", "other", "--json", *config)
    queues = {q["queue"]: q for q in json.loads(report.stdout)["queues"]}
    assert queues["jobs"]["waiting"] == 1
    assert queues["other"]["waiting"] == 1
    table = run("inspect", *config)
    assert "Workers: none running." in table.stdout
    assert "Dead letters: 0" in table.stdout


def test_scheduler_process_enqueues_and_inspect_shows_the_schedule(
    redis_config: Path, write_app, cli_process
) -> None:
    app = write_app(CRON_APP)
    scheduler = cli_process("scheduler", app, "--config", str(redis_config), "--log-level", "info")
    scheduler.wait_for(r"Schedule scheduled:tick: tick at '\* \* \* \* \* \*'")
    scheduler.wait_for(r"Enqueued tick as job")
    scheduler.process.send_signal(signal.SIGINT)
    assert scheduler.process.wait(timeout=30) == 0
    report = inspect(redis_config)
    [schedule] = report["schedules"]
    assert schedule["id"] == "scheduled:tick"
    assert schedule["task"] == "tick"
    assert schedule["cron"] == "* * * * * *"
    assert report["queues"][0]["waiting"] >= 1
