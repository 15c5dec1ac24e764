"""A job whose stored payload was corrupted, through the command line, on three backends.

The job is enqueued on queue ``emails`` (the configuration's queue is ``jobs``), its
payload is overwritten with bytes no worker can decode, and ``lexigram-tasks worker
--queue emails --burst`` dead-letters it. The record names queue ``emails``; ``dlq
retry`` refuses it (only a preview of the payload was kept, so nothing could be run)
and ``dlq retry-all`` leaves it in place and says so, rather than putting the stand-in
job on the configuration's queue where the next worker would dead-letter it again.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest
import yaml
from click.testing import CliRunner, Result

import redis
from lexigram.contracts.tasks import POISON_JOB_NAME
from lexigram.tasks.cli import cli

APP = """
from lexigram.tasks import task


@task
async def send(to: str) -> str:
    return to
"""

GARBAGE = b"\xff\xfe not a job \x00"

Corrupt = Callable[[str], None]


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin)


def _backend(config: Path) -> dict:
    return yaml.safe_load(config.read_text())["tasks"]["backend"]


def _sqlite_corrupter(config: Path) -> Corrupt:
    path = _backend(config)["url"].removeprefix("sqlite:///")

    def corrupt(job_id: str) -> None:
        with closing(sqlite3.connect(path)) as conn, conn:
            changed = conn.execute(
                "UPDATE lexigram_jobs SET payload = ? WHERE id = ?", (GARBAGE, job_id)
            ).rowcount
        assert changed == 1

    return corrupt


def _redis_corrupter(redis_url: str, prefix: str) -> Corrupt:
    def corrupt(job_id: str) -> None:
        client = redis.Redis.from_url(redis_url)
        try:
            key = f"{{{prefix}:emails}}:jobs"
            assert client.hexists(key, job_id)
            client.hset(key, job_id, GARBAGE)
        finally:
            client.close()

    return corrupt


def _postgres_corrupter(config: Path, dsn: str) -> Corrupt:
    schema = _backend(config)["options"]["schema"]

    async def update(job_id: str) -> str:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.execute(
                f'UPDATE "{schema}".tasks SET payload = $1 WHERE id = $2',  # noqa: S608 - our schema
                GARBAGE,
                job_id,
            )
        finally:
            await conn.close()

    def corrupt(job_id: str) -> None:
        assert asyncio.run(update(job_id)) == "UPDATE 1"

    return corrupt


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def backend(request: pytest.FixtureRequest) -> tuple[Path, Corrupt]:
    """A configuration (queue ``jobs``) and a way to corrupt a job stored on ``emails``."""
    if request.param == "sqlite":
        config: Path = request.getfixturevalue("sqlite_config")
        return config, _sqlite_corrupter(config)
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        config = request.getfixturevalue("redis_config")
        prefix: str = request.getfixturevalue("redis_prefix")
        return config, _redis_corrupter(request.getfixturevalue("redis_url"), prefix)
    request.applymarker(pytest.mark.postgres)
    config = request.getfixturevalue("pg_config")
    return config, _postgres_corrupter(config, request.getfixturevalue("postgres_dsn"))


def dead_letters(config: list[str]) -> dict:
    listed = run("dlq", "list", "--json", *config)
    assert listed.exit_code == 0, listed.output
    return json.loads(listed.stdout)


def test_corrupted_payload_is_dead_lettered_with_its_queue_and_never_retried(
    backend: tuple[Path, Corrupt], write_app: Callable[[str], str]
) -> None:
    config_path, corrupt = backend
    config = ["--config", str(config_path)]
    app = write_app(APP)
    enqueued = run("enqueue", "send", "--args", '["a@b.c"]', "-q", "emails", *config)
    assert enqueued.exit_code == 0, enqueued.output
    job_id = enqueued.stdout.strip()
    corrupt(job_id)

    worked = run("worker", app, "--queue", "emails", "--burst", *config)
    assert worked.exit_code == 0, worked.output
    [row] = dead_letters(config)["jobs"]
    assert row["id"] == job_id
    assert row["task"] == POISON_JOB_NAME
    assert row["reason"] == "poison"
    assert row["queue"] == "emails"

    refused = run("dlq", "retry", job_id[:12], *config)
    assert refused.exit_code == 2, refused.output
    [line] = refused.stderr.strip().splitlines()
    assert f"Job {job_id} of queue 'emails' was dead-lettered because its payload" in line
    assert "only a preview of the payload was kept, so it cannot be retried" in line
    assert "Fix the producer" in line

    skipped = run("dlq", "retry-all", "--yes", *config)
    assert skipped.exit_code == 0, skipped.output
    assert "Requeued 0 job(s). Left 1 in the DLQ" in skipped.stdout
    assert dead_letters(config)["total"] == 1
    # Nothing was put back: neither on the job's queue nor on the configuration's.
    for queue in ("emails", "jobs"):
        again = run("worker", app, "--queue", queue, "--burst", *config)
        assert again.exit_code == 0, again.output
    [still] = dead_letters(config)["jobs"]
    assert still["id"] == job_id

    # The remedy the refusal names: delete the record, asked first, by a unique prefix.
    kept = run("dlq", "delete", job_id[:12], *config, stdin="n\n")
    assert kept.exit_code == 130, kept.output  # declined, as an interrupted command
    assert dead_letters(config)["total"] == 1
    deleted = run("dlq", "delete", job_id[:12], *config, stdin="y\n")
    assert deleted.exit_code == 0, deleted.output
    assert f"Deleted dead-lettered job {job_id} ({POISON_JOB_NAME})." in deleted.stdout
    assert dead_letters(config)["total"] == 0
    gone = run("dlq", "delete", job_id, "--yes", *config)
    assert gone.exit_code == 2, gone.output
    assert f"No dead-lettered job has an id starting with {job_id!r}" in gone.stderr
