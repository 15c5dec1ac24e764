"""A worker process on Redis counts its attempts by outcome, as ``lexigram_tasks_jobs_total``.

`inspect --json` (the worker's registration) and the worker's exit line show the same six
outcomes, adding up to "processed": a job that failed once and then succeeded is one
retried and one succeeded attempt, and a job cancelled while it ran is one processed
attempt, cancelled (or lost, when the cancel came before the worker's subscription to
cancellations held: see the test).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.tasks.cli import cli

pytestmark = pytest.mark.redis

OUTCOMES = ("succeeded", "retried", "dead_lettered", "cancelled", "released", "lost")

APP = """
import asyncio
import logging
from pathlib import Path

from lexigram.tasks import task

log = logging.getLogger("outcome_counts_app")


@task(max_retries=3, retry_backoff=0.01, retry_jitter=False)
async def flaky(flag: str) -> str:
    if not Path(flag).exists():
        Path(flag).touch()
        raise RuntimeError("the first attempt fails")
    return "ok"


@task
async def slow() -> None:
    log.warning("slow started")
    await asyncio.sleep(60)
"""


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def worker_record(config: Path, processed: int, timeout: float = 20.0) -> dict:
    """The worker's registration once it counts `processed` attempts (it is rewritten
    every 5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        workers = json.loads(run("inspect", "--config", str(config), "--json"))["workers"]
        if workers and workers[0]["processed"] >= processed:
            return workers[0]
        assert time.monotonic() < deadline, workers
        time.sleep(0.2)


def test_inspect_and_the_exit_line_count_attempts_by_outcome(
    redis_config: Path, write_app, cli_process, tmp_path: Path
) -> None:
    app = write_app(APP)
    flag = tmp_path / "flaky.flag"
    config = ("--config", str(redis_config))
    run("enqueue", "flaky", "--args", json.dumps([str(flag)]), *config)
    slow_id = run("enqueue", "slow", *config).strip()
    worker = cli_process("worker", app, *config, "--log-level", "info")
    worker.wait_for("slow started")
    run("job", "cancel", slow_id, *config)

    record = worker_record(redis_config, 3)
    counts = {outcome: record[outcome] for outcome in OUTCOMES}
    # The cancel reaches the running handler through the worker's subscription to
    # cancellations, which it makes as it starts: a cancel sent before that subscription
    # holds is seen at the next lease renewal instead, when the job's lease is gone, and
    # the attempt ends "lost". Either way it is one ended attempt, counted once.
    ended = "cancelled" if counts["cancelled"] else "lost"
    assert counts == {**dict.fromkeys(OUTCOMES, 0), "succeeded": 1, "retried": 1, ended: 1}
    assert record["processed"] == sum(counts.values()) == 3
    assert record["failed"] == 1  # failed attempts, retried + dead_lettered

    worker.process.send_signal(signal.SIGTERM)
    line = worker.wait_for(r"stopped: .*")
    cancelled, lost = (1, 0) if ended == "cancelled" else (0, 1)
    assert line.group(0) == (
        f"stopped: 3 processed: 1 succeeded, 1 retried, 0 dead_lettered, {cancelled} "
        f"cancelled, 0 released, {lost} lost."
    )
    assert worker.process.wait(timeout=30) == 0
