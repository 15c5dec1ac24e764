"""The demo on Redis, PostgreSQL and RabbitMQ: it checks itself, so exit code 0 is a pass.

`lexigram-tasks demo` exits 1 and names what went wrong when a run differs from a
correct one (dead letters, retries, results, priorities, progress, cron, rate limit).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from click.testing import CliRunner

import redis
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.cli import cli

SUMMARY_ROWS = (
    "jobs succeeded",
    "dead-lettered (DLQ)",
    "3/3 reached 100 %",
    "cron (every second)",
    "rate-limited queue (5/s)",
    "workflow: chord",
)


def run_demo(*args: str) -> tuple[str, str]:
    """Run the demo; return its queue name and its output."""
    result = CliRunner().invoke(cli, ["demo", *args])
    assert result.exit_code == 0, result.output
    assert "check failed" not in result.stderr
    for row in SUMMARY_ROWS:
        assert row in result.stdout, row
    queue = re.search(r"Queues (lexigram-demo-[0-9a-f]{8}),", result.stdout)
    assert queue is not None, result.stdout
    return queue.group(1), result.stdout


def assert_nothing_left(backend: list[str], queue: str) -> None:
    names = [queue, f"{queue}-reports", f"{queue}-partners"]
    args = ["inspect", *backend, "--json"] + [arg for name in names for arg in ("-q", name)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [q["total"] for q in report["queues"]] == [0, 0, 0]
    if report["dead_letters"] is not None:
        listed = json.loads(CliRunner().invoke(cli, ["dlq", "list", *backend, "--json"]).stdout)
        assert not [job for job in listed["jobs"] if str(job["queue"]).startswith(queue)]


@pytest.mark.redis
def test_demo_on_redis(redis_config: Path, redis_url: str, redis_prefix: str) -> None:
    queue, out = run_demo("--config", str(redis_config))
    assert "on the redis (redis://" in out
    assert_nothing_left(["--config", str(redis_config)], queue)
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k.decode() for k in client.scan_iter(match=f"{{{redis_prefix}:*", count=1000)]
    finally:
        client.close()
    # Left: the 3 reports' last progress snapshots and results' wake-up lists, both
    # expiring on their own (the stores offer no delete for them), and each queue's
    # lease-token counter (``...}:seq``), which clear() keeps so that a token handed out
    # before the clear can never be handed out again.
    leftovers = (":tracker}", ":results}:n:")
    assert all(any(part in k for part in leftovers) or k.endswith("}:seq") for k in keys), keys


@pytest.mark.postgres
def test_demo_on_postgres(postgres_dsn: str) -> None:
    queue, out = run_demo("--backend", postgres_dsn)
    assert "on the postgres (" in out
    assert_nothing_left(["--backend", postgres_dsn], queue)


def rabbitmq_family(base: str) -> tuple[list[str], list[str]]:
    """Queues and exchanges the demo's three RabbitMQ queues may create."""
    queues: list[str] = []
    exchanges: list[str] = []
    for suffix in ("", "-reports", "-partners"):
        name = base + suffix
        queues += [name, f"{name}.dlx"] + [f"{name}.delay.{2**n}ms" for n in range(5, 32)]
        exchanges += [f"{name}.dlx", f"{name}.delayed"]
    return queues, exchanges


async def rabbitmq_leftovers(amqp_url: str, base: str) -> list[str]:
    """The demo's queues and exchanges that still exist on the broker (passive declares)."""
    queues, exchanges = rabbitmq_family(base)
    found: list[str] = []
    connection = await aio_pika.connect(amqp_url)
    try:
        for name in queues + exchanges:
            channel = await connection.channel()  # a failed passive declare closes it
            try:
                if name in queues:
                    await channel.declare_queue(name, passive=True)
                else:
                    await channel.get_exchange(name, ensure=True)
            except aio_pika.exceptions.ChannelClosed:
                continue
            found.append(name)
            await channel.close()
    finally:
        await connection.close()
    return found


@pytest.fixture
def rabbitmq_demo_queues(amqp_url: str) -> Iterator[list[str]]:
    """Names of the demo's queues; whatever the checks re-declared is deleted afterwards."""
    created: list[str] = []
    yield created

    async def delete() -> None:
        for base in created:
            for suffix in ("", "-reports", "-partners"):
                queue = RabbitMQTaskQueue(amqp_url, base + suffix)
                try:
                    await queue.delete_queues(if_empty=False)
                finally:
                    await queue.close()

    asyncio.run(delete())


@pytest.mark.rabbitmq
def test_demo_on_rabbitmq(amqp_url: str, rabbitmq_demo_queues: list[str]) -> None:
    queue, out = run_demo("--backend", amqp_url)
    rabbitmq_demo_queues.append(queue)
    assert "on the rabbitmq (amqp://" in out
    # The demo deletes its queues and exchanges: nothing piles up run after run.
    assert asyncio.run(rabbitmq_leftovers(amqp_url, queue)) == []
    assert_nothing_left(["--backend", amqp_url], queue)  # (inspecting declares them again)
