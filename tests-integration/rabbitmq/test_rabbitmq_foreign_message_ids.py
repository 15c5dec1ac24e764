"""Messages another program published with strings that are not UTF-8, on a real broker.

AMQP short strings (a message id, a header's name) are octets; pamqp decoded them as UTF-8
and raised, so aiormq closed the connection on the content header, and the broker
redelivered the message to the next connection, which failed alike: one such message
stopped every consumer of its queue. Now they are read with their bad bytes escaped: the
job in the body runs, and an undecodable body becomes a poison stand-in with a printable id.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import aiormq
import pamqp.encode
import pytest
from pamqp.commands import Basic

from lexigram.contracts.tasks import POISON_JOB_NAME, Job, encode_job
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue

pytestmark = pytest.mark.rabbitmq

RAW_ID = b"foreign-\xff\xfe-id"
PRINTABLE_ID = "foreign-\\xff\\xfe-id"


def _octets(encoder: object, value: str) -> bytes:
    """pamqp's string encoder, but text from surrogateescape goes out as its raw bytes."""
    raw = value.encode("utf-8", "surrogateescape")
    return encoder.pack(len(raw)) + raw  # type: ignore[attr-defined,no-any-return]


async def publish_foreign(
    amqp_url: str, queue_name: str, body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publish `body` as another program could: message and correlation id not UTF-8."""
    text = RAW_ID.decode("utf-8", "surrogateescape")
    with monkeypatch.context() as patch:
        patch.setattr(pamqp.encode, "_string", _octets)
        connection = await aiormq.connect(amqp_url)
        try:
            channel = await connection.channel()
            properties = Basic.Properties(message_id=text, correlation_id=text, delivery_mode=2)
            await channel.basic_publish(body, routing_key=queue_name, properties=properties)
        finally:
            await connection.close()


def _raw_key_table(table: dict[str, Any]) -> bytes:
    """A field table whose names (text from surrogateescape) go out as their raw bytes.

    Values are long strings or nested tables: what these tests send.
    """
    fields = b""
    for key, item in table.items():
        name = key.encode("utf-8", "surrogateescape")
        if isinstance(item, dict):
            value = b"F" + _raw_key_table(item)
        else:
            text = item.encode()
            value = b"S" + struct.pack(">I", len(text)) + text
        fields += bytes([len(name)]) + name + value
    return struct.pack(">I", len(fields)) + fields


async def publish_with_headers(
    amqp_url: str,
    queue_name: str,
    body: bytes,
    headers: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Publish `body` with `headers`, whose names may hold bytes that are not UTF-8."""
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        properties = Basic.Properties(headers=headers, delivery_mode=2)
        # Only the publish: the connection's own tables (its capabilities) hold booleans.
        with monkeypatch.context() as patch:
            patch.setitem(pamqp.encode.METHODS, "table", _raw_key_table)
            await channel.basic_publish(body, routing_key=queue_name, properties=properties)
    finally:
        await connection.close()


async def take(queue: RabbitMQTaskQueue, count: int) -> list[Job]:
    taken: list[Job] = []
    async with asyncio.timeout(10):
        while len(taken) < count:
            taken += await queue.dequeue_batch(count - len(taken), timeout=1.0)
    return taken


def backend_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith(("lexigram.tasks.backends.rabbitmq", "aiormq", "aio_pika"))
        and record.levelno >= logging.WARNING
    ]


BAD_NAME = b"x-trace-\xff".decode("utf-8", "surrogateescape")
NESTED_BAD_NAME = b"k\xfe".decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("foreign_part", ["message id", "header names"])
async def test_the_job_in_the_body_runs_and_the_connection_stays_up(
    rabbitmq_queue: RabbitMQTaskQueue,
    amqp_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    foreign_part: str,
) -> None:
    caplog.set_level(logging.WARNING)
    queue = rabbitmq_queue
    foreign = Job(name="work", args=(0,), queue_name=queue.queue_name)
    body = encode_job(foreign)
    (await queue.enqueue(Job(name="work", args=(1,)))).unwrap()  # declares the queue
    if foreign_part == "message id":
        await publish_foreign(amqp_url, queue.queue_name, body, monkeypatch)
    else:  # at the top of the table and inside a nested one
        headers = {BAD_NAME: "a", "x-meta": {NESTED_BAD_NAME: "b"}}
        await publish_with_headers(amqp_url, queue.queue_name, body, headers, monkeypatch)
    (await queue.enqueue(Job(name="work", args=(2,)))).unwrap()

    taken = await take(queue, 3)

    assert sorted(job.args[0] for job in taken) == [0, 1, 2]
    assert next(job for job in taken if job.args == (0,)).id == foreign.id
    for job in taken:
        assert await queue.ack(job.id, lease_token=job.lease_token)
    assert backend_warnings(caplog) == []  # no connection was lost on the way


async def test_an_undecodable_body_is_poison_under_a_printable_id(
    rabbitmq_queue: RabbitMQTaskQueue, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = rabbitmq_queue
    (await queue.enqueue(Job(name="work"))).unwrap()  # declares the queue
    await publish_foreign(amqp_url, queue.queue_name, b"\xff not a job", monkeypatch)

    taken = await take(queue, 2)

    poison = next(job for job in taken if job.name == POISON_JOB_NAME)
    assert poison.id == PRINTABLE_ID
    assert poison.queue_name == queue.queue_name
    for job in taken:
        assert await queue.ack(job.id, lease_token=job.lease_token)
