"""``must_exist``: a RabbitMQ queue object that creates nothing on the broker.

The command line's read-only commands set the option (``existing_only``), so a mistyped
``--queue`` must leave no queue, dead-letter queue or exchange behind: reads of a
missing queue see it empty, writes and consumes fail with one line naming it, and the
commands that need no queue at all (``schedule``, ``dlq``: they read the ``stores``
backend) work on a broker where it was never declared.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiormq
import pytest

from lexigram.contracts.tasks import CancelOutcome, Job, JobStatus
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.rabbitmq._existing import QueueMissingError
from lexigram.tasks.backends.rabbitmq._options import (
    cancel_exchange_name,
    dead_letter_name,
    delayed_exchange_name,
    owned_queues,
)

pytestmark = pytest.mark.rabbitmq

Broker = Any  # the `broker` fixture's type lives in conftest.py, which tests do not import
RunCli = Callable[..., subprocess.CompletedProcess[str]]  # the `run_cli` fixture


async def leftovers(url: str, name: str) -> list[str]:
    """The queues and exchanges of `name`'s family that exist (passive declares).

    Asked on a connection of its own, so nothing the queue object under test holds
    (its channels, its cached state) can answer for the broker.
    """
    connection = await aiormq.connect(url)
    found: list[str] = []
    try:
        queues = owned_queues(name)
        exchanges = [
            dead_letter_name(name),
            delayed_exchange_name(name),
            cancel_exchange_name(name),
        ]
        channel = await connection.channel()
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for entity in names:
                if channel.is_closed:
                    channel = await connection.channel()
                try:
                    if kind == "queue":
                        await channel.queue_declare(entity, passive=True)
                    else:
                        await channel.exchange_declare(entity, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    continue
                found.append(f"{kind} {entity}")
    finally:
        await connection.close()
    return found


def _missing_line(url: str, name: str) -> str:
    masked = url.replace(":guest@", ":***@")
    return (
        f"RabbitMQ queue {name!r} does not exist on {masked} (must_exist is set: this command "
        "creates nothing). Check --queue and the config's queue_name, or start a worker, "
        "which declares it."
    )


async def test_reads_of_a_missing_queue_see_it_empty_and_create_nothing(
    amqp_url: str, queue_name: str, broker: Broker
) -> None:
    queue = RabbitMQTaskQueue(amqp_url, queue_name, must_exist=True)
    try:
        await queue.check_connection()  # connects: the first check
        await queue.check_connection()  # connected: the passive look-up
        assert await queue.count(queue_name) == 0
        for status in (JobStatus.PENDING, JobStatus.RETRYING, JobStatus.RUNNING):
            assert await queue.count(queue_name, status) == 0
        assert await queue.get_task_count() == 0
        assert await queue.get_job("no-such-job") is None
        assert await queue.cancel("no-such-job") is CancelOutcome.NOT_FOUND
    finally:
        await queue.close()
    try:
        assert await leftovers(amqp_url, queue_name) == []
    finally:
        await broker.delete_family(queue_name)


async def test_writes_and_consumes_of_a_missing_queue_fail_in_one_line(
    amqp_url: str, queue_name: str, broker: Broker
) -> None:
    queue = RabbitMQTaskQueue(amqp_url, queue_name, must_exist=True)
    line = _missing_line(amqp_url, queue_name)
    try:
        result = await queue.enqueue(Job(name="x", idempotency_key="once"))
        assert result.is_err()
        assert isinstance(result.err(), QueueMissingError)
        assert str(result.err()) == line
        later = time.time() + 5
        many = await queue.enqueue_many([Job(name="a"), Job(name="b", scheduled_at=later)])
        assert [str(r.err()) for r in many] == [line, line]
        with pytest.raises(QueueMissingError) as fetched:
            await queue.dequeue()
        assert str(fetched.value) == line
        with pytest.raises(QueueMissingError) as waited:
            await queue.dequeue_batch(1, timeout=0.5)
        assert str(waited.value) == line
    finally:
        await queue.close()
    try:
        # Not even the idempotency claim of the refused job reached the broker.
        assert await leftovers(amqp_url, queue_name) == []
        assert await _claim_queues(amqp_url, queue_name) == []
    finally:
        await broker.delete_family(queue_name)


async def _claim_queues(url: str, name: str) -> list[str]:
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        try:
            await channel.queue_declare(f"{name}.idem", passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return []
        return [f"{name}.idem"]
    finally:
        await connection.close()


async def test_an_existing_queue_is_served_without_being_declared_again(
    amqp_url: str, queue_name: str
) -> None:
    owner = RabbitMQTaskQueue(amqp_url, queue_name)
    await owner.connect()
    # Other arguments than the queue's: a declare would be refused as inequivalent, so
    # everything below working shows that nothing is declared.
    reader = RabbitMQTaskQueue(amqp_url, queue_name, must_exist=True, max_priority=3)
    try:
        await reader.check_connection()
        assert (await reader.enqueue(Job(name="now"))).is_ok()
        assert await reader.count(queue_name, JobStatus.PENDING) == 1
        delayed = await reader.enqueue(Job(name="later", scheduled_at=time.time() + 5))
        assert isinstance(delayed.err(), QueueMissingError)
        assert ".delay." in str(delayed.err())
        assert "(a delay bucket of queue" in str(delayed.err())
        job = await reader.dequeue()
        assert job is not None
        assert job.name == "now"
        assert await reader.ack(job.id, lease_token=job.lease_token)
        assert await reader.dequeue_batch(1, timeout=0.2) == []
        assert sorted(await leftovers(amqp_url, queue_name)) == [
            f"exchange {queue_name}.dlx",
            f"queue {queue_name}",
            f"queue {queue_name}.dlx",
        ]
    finally:
        await reader.close()
        await owner.delete_queues(if_empty=False)
        await owner.close()


# -- the command line ------------------------------------------------------------------


async def test_inspect_of_a_mistyped_queue_shows_it_empty_and_creates_nothing(
    amqp_url: str, queue_name: str, tmp_path: Path, broker: Broker, run_cli: RunCli
) -> None:
    try:
        done = run_cli("inspect", "-q", queue_name, "--backend", amqp_url, "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert f'"queue": "{queue_name}"' in done.stdout
        assert '"total": 0' in done.stdout
        shown = run_cli("inspect", "-q", queue_name, "--backend", amqp_url, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert queue_name in shown.stdout
        assert await leftovers(amqp_url, queue_name) == []
    finally:
        await broker.delete_family(queue_name)


@pytest.mark.redis
@pytest.mark.parametrize("command", [["schedule", "list"], ["dlq", "list"]], ids=" ".join)
async def test_commands_that_read_the_stores_work_where_the_queue_was_never_declared(
    *,
    amqp_url: str,
    redis_url: str,
    redis_prefix: str,
    run_cli: RunCli,
    queue_name: str,
    tmp_path: Path,
    broker: Broker,
    command: list[str],
) -> None:
    config = tmp_path / "tasks.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            tasks:
              backend:
                type: rabbitmq
                url: "{amqp_url}"
                queue_name: {queue_name}
                options:
                  stores:
                    type: redis
                    url: "{redis_url}"
                    options:
                      key_prefix: {redis_prefix}
            """
        )
    )
    try:
        done = run_cli(*command, "--config", str(config), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert await leftovers(amqp_url, queue_name) == []
    finally:
        await broker.delete_family(queue_name)
