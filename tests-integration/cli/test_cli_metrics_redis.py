"""``lexigram-tasks worker --metrics-port``: a real worker process on Redis, scraped over HTTP."""

from __future__ import annotations

import os
import signal
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from lexigram.tasks.cli import cli

pytestmark = pytest.mark.redis

APP = """
from lexigram.tasks import task


@task
async def ok(n: int) -> int:
    return n


@task(max_retries=1)
async def broken() -> None:
    raise RuntimeError("always fails")
"""

OK_JOBS = 6
BROKEN_JOBS = 3


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def jobs_total(samples: dict, task: str, outcome: str) -> float:
    labels = (("outcome", outcome), ("queue", "jobs"), ("task", task))
    return samples.get(("lexigram_tasks_jobs_total", labels), 0.0)


def test_metrics_endpoint_counts_successes_retries_and_dead_letters(
    redis_config: Path, write_app, cli_process, free_port
) -> None:
    config = redis_config.read_text() + (
        "    retry:\n      initial_delay: 0.01\n      max_delay: 0.01\n      jitter: 0.0\n"
    )
    redis_config.write_text(config)
    app = write_app(APP)
    runner = CliRunner()
    for n in range(OK_JOBS):
        done = runner.invoke(
            cli, ["enqueue", "ok", "--args", f"[{n}]", "--config", str(redis_config)]
        )
        assert done.exit_code == 0, done.output
    for _ in range(BROKEN_JOBS):
        done = runner.invoke(cli, ["enqueue", "broken", "--config", str(redis_config)])
        assert done.exit_code == 0, done.output

    port = free_port()
    worker = cli_process("worker", app, "--config", str(redis_config), "--metrics-port", str(port))
    worker.wait_for(r"Serving metrics on http://127\.0\.0\.1:\d+/metrics")
    worker.wait_for(r"consuming jobs")
    deadline = time.monotonic() + 30
    samples: dict = {}
    while time.monotonic() < deadline:
        samples = scrape(port)
        if (
            jobs_total(samples, "ok", "succeeded") >= OK_JOBS
            and jobs_total(samples, "broken", "dead_lettered") >= BROKEN_JOBS
        ):
            break
        time.sleep(0.2)
    assert jobs_total(samples, "ok", "succeeded") == OK_JOBS, samples
    assert jobs_total(samples, "broken", "retried") == BROKEN_JOBS
    assert jobs_total(samples, "broken", "dead_lettered") == BROKEN_JOBS
    assert jobs_total(samples, "ok", "dead_lettered") == 0
    ok = (("queue", "jobs"), ("task", "ok"))
    broken = (("queue", "jobs"), ("task", "broken"))
    assert samples[("lexigram_tasks_job_duration_seconds_count", ok)] == OK_JOBS
    assert samples[("lexigram_tasks_job_duration_seconds_count", broken)] == 2 * BROKEN_JOBS
    assert samples[("lexigram_tasks_queue_wait_seconds_count", ok)] == OK_JOBS
    assert samples[("lexigram_tasks_jobs_in_progress", ok)] == 0
    assert ("lexigram_tasks_event_loop_lag_seconds", ()) in samples
    # The depth is read at most every 5 s, so a figure from the busy start may linger.
    depth = ("lexigram_tasks_queue_depth", (("queue", "jobs"),))
    assert 0 <= samples[depth] <= OK_JOBS + BROKEN_JOBS
    deadline = time.monotonic() + 15
    while samples[depth] != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        samples = scrape(port)
    assert samples[depth] == 0


def snapshot_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("lexigram-tasks-metrics-*"))


def wait_for_totals(port: int, ok: float, dead: float) -> dict:
    deadline = time.monotonic() + 30
    samples: dict = {}
    while time.monotonic() < deadline:
        samples = scrape(port)
        if (
            jobs_total(samples, "ok", "succeeded") >= ok
            and jobs_total(samples, "broken", "dead_lettered") >= dead
        ):
            break
        time.sleep(0.2)
    return samples


def test_several_worker_processes_are_served_summed_by_the_supervisor(
    redis_config: Path, write_app, cli_process, free_port
) -> None:
    """`--workers 2` with the port from the config: one endpoint, both children counted."""
    port = free_port()
    redis_config.write_text(
        redis_config.read_text()
        + f"    metrics_port: {port}\n"
        + "    retry:\n      initial_delay: 0.01\n      max_delay: 0.01\n      jitter: 0.0\n"
    )
    app = write_app(APP)
    runner = CliRunner()
    for n in range(OK_JOBS):
        done = runner.invoke(
            cli, ["enqueue", "ok", "--args", f"[{n}]", "--config", str(redis_config)]
        )
        assert done.exit_code == 0, done.output
    done = runner.invoke(cli, ["enqueue", "broken", "--config", str(redis_config)])
    assert done.exit_code == 0, done.output

    dirs_before = snapshot_dirs()
    supervisor = cli_process("worker", app, "--config", str(redis_config), "--workers", "2")
    supervisor.wait_for(r"Serving the worker processes' metrics on http://127\.0\.0\.1:\d+")
    pids = [int(supervisor.wait_for(r"Started worker process \d \(pid (\d+)\)")[1])]
    pids.append(int(supervisor.wait_for(r"Started worker process \d \(pid (\d+)\)")[1]))
    samples = wait_for_totals(port, OK_JOBS, 1)
    assert jobs_total(samples, "ok", "succeeded") == OK_JOBS, samples
    assert jobs_total(samples, "broken", "retried") == 1
    assert jobs_total(samples, "broken", "dead_lettered") == 1
    assert samples[("lexigram_tasks_jobs_in_progress", (("queue", "jobs"), ("task", "ok")))] == 0
    assert ("lexigram_tasks_event_loop_lag_seconds", ()) in samples

    # A child killed and restarted never takes its counts with it.
    os.kill(pids[0], signal.SIGKILL)
    supervisor.wait_for(r"Started worker process \d \(pid \d+\)")
    done = runner.invoke(cli, ["enqueue", "ok", "--args", "[99]", "--config", str(redis_config)])
    assert done.exit_code == 0, done.output
    samples = wait_for_totals(port, OK_JOBS + 1, 1)
    assert jobs_total(samples, "ok", "succeeded") == OK_JOBS + 1, samples

    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.process.wait(timeout=30) == 0
    # The snapshot directory goes with the supervisor.
    assert snapshot_dirs() <= dirs_before
