"""Leases on AMQP: a delivery dies with its channel, and recovery after a connection loss.

A delivery's lease ends when it runs out (the kit checks that) or when the channel it
came on is lost: then the broker redelivers the job and the old lease token is
refused. These tests drop connections from the broker side (``rabbitmqctl
close_connection``, as on a network loss) and check that jobs come back, the holder
of a lost delivery is refused by all four settling calls, and consumers and
producers recover.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from lexigram.contracts.tasks import Job, JobStatus
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue

pytestmark = pytest.mark.rabbitmq

Broker = Any  # the `broker` fixture's type lives in conftest.py, which tests do not import
Factory = Callable[..., RabbitMQTaskQueue]


async def lease(queue: RabbitMQTaskQueue, count: int, *, within: float = 10.0) -> list[Job]:
    jobs: list[Job] = []
    deadline = time.monotonic() + within
    while len(jobs) < count and time.monotonic() < deadline:
        jobs += await queue.dequeue_batch(count - len(jobs), timeout=deadline - time.monotonic())
    assert len(jobs) == count, f"leased {len(jobs)} of {count} jobs"
    return jobs


async def until_lease_lost(queue: RabbitMQTaskQueue, job_id: str, within: float = 10.0) -> None:
    """Poll the heartbeat until it reports the delivery gone (the client saw the drop)."""
    deadline = time.monotonic() + within
    while await queue.extend_lease(job_id):
        assert time.monotonic() < deadline, "extend_lease still True after the connection dropped"
        await asyncio.sleep(0.02)


async def test_connection_loss_redelivers_jobs_and_the_consumer_resumes(
    make_rabbitmq_queue: Factory, queue_name: str, broker: Broker, broker_admin: None
) -> None:
    worker = make_rabbitmq_queue()
    producer = make_rabbitmq_queue()
    jobs = [Job(name=f"j{i}") for i in range(2)]
    await producer.enqueue_many(jobs)
    held = await lease(worker, 2)
    assert [await worker.extend_lease(job.id) for job in held] == [True, True]

    assert await broker.drop_connections(queue_name) >= 2
    await until_lease_lost(worker, held[0].id)

    # The broker requeued both; the robust connection is back and consuming again.
    again = await lease(worker, 2)
    assert sorted(job.id for job in again) == sorted(job.id for job in jobs)
    assert all(job.delivery_count == 2 for job in again)  # classic: the redelivered flag
    assert [await worker.extend_lease(job.id) for job in again] == [True, True]
    late = Job(name="after-the-outage")
    assert (await producer.enqueue(late)).is_ok()
    (new,) = await lease(worker, 1)
    assert new.id == late.id
    for job in [*again, new]:
        await worker.ack(job.id)
    assert await producer.count(queue_name) == 0


async def test_forced_close_logs_the_outage_and_no_error(
    make_rabbitmq_queue: Factory,
    queue_name: str,
    broker: Broker,
    broker_admin: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A forced close the queue recovers from is one WARNING pair, not aiormq/aio-pika ERRORs.

    aio-pika's robust channels tried to reopen on the dead connection and logged a
    ChannelInvalidStateError per channel; aiormq logged the server's close as an ERROR
    and its reader's end with a traceback.
    """
    queue = make_rabbitmq_queue()
    await queue.enqueue(Job(name="before"))
    (held,) = await lease(queue, 1)  # consumer and get channels open
    await queue.dequeue()  # the basic.get channel too
    caplog.set_level(logging.INFO)
    assert await broker.drop_connections(queue_name) >= 1
    await until_lease_lost(queue, held.id)
    (again,) = await lease(queue, 1)
    assert await queue.ack(again.id, lease_token=again.lease_token)
    # By the message template: aio-pika's callback record cannot be formatted once run.
    noisy = [
        f"{record.name} {record.levelname}: {record.msg}"
        for record in caplog.records
        if record.levelno >= logging.ERROR
        or (record.levelno >= logging.WARNING and record.name.startswith(("aiormq", "aio_pika")))
    ]
    assert noisy == []
    outage = await _outage_lines(caplog, until="reachable again")
    assert any("CONNECTION_FORCED" in line for line in outage)
    assert any("reachable again" in line for line in outage)


async def _outage_lines(
    caplog: pytest.LogCaptureFixture, *, until: str, within: float = 10.0
) -> list[str]:
    """Our outage lines, once one contains `until` (or `within` seconds have passed).

    The connection says it is reachable again once it has reopened every channel; the
    consumer's channel comes back first, so a job can be leased and acked before that.
    """
    deadline = time.monotonic() + within
    while True:
        lines = [
            record.getMessage()
            for record in caplog.records
            if record.name.startswith("lexigram") and "RabbitMQ at" in record.getMessage()
        ]
        if any(until in line for line in lines) or time.monotonic() > deadline:
            return lines
        await asyncio.sleep(0.05)


async def test_holder_of_a_lost_delivery_is_refused_on_all_four_calls(
    make_rabbitmq_queue: Factory, queue_name: str, broker: Broker, broker_admin: None
) -> None:
    worker = make_rabbitmq_queue()
    job = Job(name="finishes-while-disconnected")
    await worker.enqueue(job)
    (held,) = await lease(worker, 1)
    token = held.lease_token
    await broker.drop_connections(queue_name)
    await until_lease_lost(worker, held.id)
    # The broker requeued the job with the channel; after the reconnect it is
    # delivered again, under a new token, to this same process.
    (again,) = await lease(worker, 1)
    assert again.id == held.id
    assert again.lease_token != token
    stale = Job.from_dict(held.to_dict())
    stale.lease_token = token
    stale.mark_retrying()
    assert await worker.ack(held.id, lease_token=token) is False
    assert await worker.nack(held.id, requeue=False, lease_token=token) is False
    assert await worker.extend_lease(held.id, 60.0, lease_token=token) is False
    assert await worker.retry_later(stale, delay=0.0) is False
    # Nothing of that touched the new delivery.
    assert await worker.count(queue_name, JobStatus.RUNNING) == 1
    assert await worker.extend_lease(again.id, lease_token=again.lease_token) is True
    assert await worker.ack(again.id, lease_token=again.lease_token) is True
    assert await worker.count(queue_name) == 0


async def test_enqueue_waits_for_the_reconnect(
    make_rabbitmq_queue: Factory, queue_name: str, broker: Broker, broker_admin: None
) -> None:
    producer = make_rabbitmq_queue()
    await producer.connect()
    await broker.drop_connections(queue_name)
    job = Job(name="published-across-a-reconnect")
    assert (await producer.enqueue(job)).is_ok()
    assert await broker.depth(queue_name) == 1


async def test_lookups_wait_for_the_reconnect(
    make_rabbitmq_queue: Factory, queue_name: str, broker: Broker, broker_admin: None
) -> None:
    queue = make_rabbitmq_queue(reconnect_interval=1.0)
    await queue.enqueue(Job(name="waiting"))
    await broker.drop_connections(queue_name)
    # The client has seen the loss and reconnects in about a second: counting (a
    # throwaway channel of its own) waits for that instead of failing.
    assert await queue.count(queue_name) == 1
    await queue.clear()
    assert await queue.count(queue_name) == 0


async def test_closed_consumer_hands_its_jobs_to_another(make_rabbitmq_queue: Factory) -> None:
    crashed, survivor = make_rabbitmq_queue(), make_rabbitmq_queue()
    job = Job(name="orphan")
    await crashed.enqueue(job)
    (held,) = await lease(crashed, 1)
    await crashed.close()  # the process is gone: the broker requeues its unacked jobs
    (again,) = await lease(survivor, 1)
    assert again.id == held.id
    assert again.delivery_count == 2
    await survivor.ack(again.id)
    assert await survivor.get_job(job.id) is None


async def test_heartbeats_hold_a_job_for_many_leases(make_rabbitmq_queue: Factory) -> None:
    holder, other = (
        make_rabbitmq_queue(visibility_timeout=0.6),
        make_rabbitmq_queue(visibility_timeout=0.6),
    )
    job = Job(name="long-running")
    await holder.enqueue(job)
    (held,) = await lease(holder, 1)
    # Five leases pass with a heartbeat every third of one: nobody else gets the job.
    for _ in range(15):
        assert await other.dequeue_batch(1, timeout=0.2) == []
        assert await holder.extend_lease(job.id, lease_token=held.lease_token)
    assert await holder.ack(job.id, lease_token=held.lease_token) is True
    assert await holder.extend_lease(job.id) is False


async def test_a_lease_without_heartbeats_runs_out(make_rabbitmq_queue: Factory) -> None:
    holder, other = (
        make_rabbitmq_queue(visibility_timeout=0.5),
        make_rabbitmq_queue(visibility_timeout=0.5),
    )
    job = Job(name="forgotten")
    await holder.enqueue(job)
    (held,) = await lease(holder, 1)
    started = time.monotonic()
    (again,) = await lease(other, 1, within=5.0)
    assert again.id == job.id
    assert time.monotonic() - started >= 0.4
    assert await holder.ack(job.id, lease_token=held.lease_token) is False
    assert await other.ack(job.id, lease_token=again.lease_token) is True


async def test_a_blocked_loop_does_not_lose_its_lease(make_rabbitmq_queue: Factory) -> None:
    """A handler that blocks the event loop past the lease blocks the lease timer too.

    When the loop runs again the timer is late; it gives the holder a third of a lease to
    heartbeat instead of handing the job to another consumer while its worker lives.
    """
    holder, other = (
        make_rabbitmq_queue(visibility_timeout=0.6),
        make_rabbitmq_queue(visibility_timeout=0.6),
    )
    job = Job(name="blocks-the-loop")
    await holder.enqueue(job)
    (held,) = await lease(holder, 1)
    time.sleep(1.2)  # noqa: ASYNC251 - the point: a handler blocking the loop, twice the lease
    await asyncio.sleep(0.01)  # the late lease timer runs here, before the next heartbeat
    assert await holder.extend_lease(job.id, lease_token=held.lease_token) is True
    assert await other.dequeue_batch(1, timeout=0.5) == []
    assert await holder.ack(job.id, lease_token=held.lease_token) is True


async def test_quorum_redelivery_counts_from_x_delivery_count(
    make_rabbitmq_queue: Factory, queue_name: str, broker: Broker, broker_admin: None
) -> None:
    worker = make_rabbitmq_queue(queue_type="quorum")
    job = Job(name="quorum-job")
    await worker.enqueue(job)
    (held,) = await lease(worker, 1)
    assert held.delivery_count == 1
    await broker.drop_connections(queue_name)
    await until_lease_lost(worker, held.id)
    (again,) = await lease(worker, 1)
    assert again.delivery_count == 2
    await worker.nack(again.id, requeue=True)
    (third,) = await lease(worker, 1)
    assert third.delivery_count == 3
    await worker.ack(third.id)


async def test_classic_redeliveries_are_counted_exactly(
    make_rabbitmq_queue: Factory, queue_name: str, broker: Broker, broker_admin: None
) -> None:
    # A job that keeps killing its worker must see its count grow, so the worker's
    # max_deliveries can stop the crash loop: each redelivery is re-published with it.
    worker = make_rabbitmq_queue()
    job = Job(name="crash-looper")
    await worker.enqueue(job)
    counts = []
    for _ in range(3):
        (held,) = await lease(worker, 1)
        counts.append(held.delivery_count)
        await broker.drop_connections(queue_name)
        await until_lease_lost(worker, held.id)
    (last,) = await lease(worker, 1)
    counts.append(last.delivery_count)
    assert counts == [1, 2, 3, 4]
    await worker.ack(last.id)
    assert await worker.count(queue_name) == 0
