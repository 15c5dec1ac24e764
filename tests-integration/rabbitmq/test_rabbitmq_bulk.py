"""`enqueue_many`'s bulk path on a real broker: many publishes per socket write.

Every Ok must still mean "the broker has it": the hand-packed frames must reach the
queue intact (priorities, delays, bodies larger than a frame), a message the broker
returns must come back as Err, and a connection lost in the middle of a batch must
leave no Ok job missing (the unconfirmed ones are published again one by one).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import BackendConnectionError, Job, Priority, TaskValidationError
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.rabbitmq import _connection as link_module

pytestmark = pytest.mark.rabbitmq

Broker = Any  # the `broker` fixture's type lives in conftest.py, which tests do not import
Factory = Callable[..., RabbitMQTaskQueue]


async def drain(
    queue: RabbitMQTaskQueue, *, quiet_for: float = 1.0, within: float = 60.0
) -> list[Job]:
    """Lease and ack every job until none arrives for `quiet_for` seconds."""
    jobs: list[Job] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        batch = await queue.dequeue_batch(500, timeout=quiet_for)
        if not batch:
            return jobs
        for job in batch:
            await queue.ack(job.id)
        jobs += batch
    pytest.fail(f"still receiving jobs after {within} s ({len(jobs)} so far)")


async def test_bulk_publishes_arrive_intact_in_priority_order(
    make_rabbitmq_queue: Factory, queue_name: str, broker: Broker
) -> None:
    producer = make_rabbitmq_queue(publish_window=64)  # many slices and chunks
    priorities = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL]
    jobs = [
        Job(name="bulk", args=(index, "é" * (index % 7)), priority=priorities[index % 4])
        for index in range(1000)
    ]
    results = await producer.enqueue_many(jobs)
    assert [result.unwrap() for result in results] == [job.id for job in jobs]
    assert await broker.depth(queue_name) == len(jobs)

    consumer = make_rabbitmq_queue()
    leased = await drain(consumer)
    assert sorted(job.id for job in leased) == sorted(job.id for job in jobs)
    by_id = {job.id: job for job in jobs}
    assert all(job.args == by_id[job.id].args for job in leased)
    # Everything was queued before the consumer came: the broker hands out by priority.
    order = [job.priority for job in leased]
    assert order == sorted(order, reverse=True)


async def test_bodies_larger_than_a_frame_are_split_and_rejoined(
    rabbitmq_queue: RabbitMQTaskQueue,
) -> None:
    big = "x" * 400_000  # three body frames at RabbitMQ's default frame_max of 128 KiB
    jobs = [
        Job(name="small", args=(1,)),
        Job(name="big", args=(big,)),
        Job(name="small", args=(2,)),
    ]
    assert all(result.is_ok() for result in await rabbitmq_queue.enqueue_many(jobs))
    leased = await drain(rabbitmq_queue)
    assert sorted(job.id for job in leased) == sorted(job.id for job in jobs)
    (got,) = [job for job in leased if job.name == "big"]
    assert got.args == (big,)


async def test_delayed_jobs_in_a_batch_go_to_their_buckets(
    rabbitmq_queue: RabbitMQTaskQueue, queue_name: str, broker: Broker
) -> None:
    now = time.time()
    ready = [Job(name="now") for _ in range(5)]
    later = [Job(name="later", scheduled_at=now + 0.5) for _ in range(5)]
    results = await rabbitmq_queue.enqueue_many([*ready, *later])
    assert all(result.is_ok() for result in results)
    assert await broker.depth(queue_name) == len(ready)
    assert await rabbitmq_queue.count(queue_name) == len(ready) + len(later)
    leased = await drain(rabbitmq_queue, quiet_for=2.0)
    assert sorted(job.id for job in leased) == sorted(job.id for job in [*ready, *later])
    assert all(job.scheduled_at is None or job.scheduled_at <= time.time() for job in leased)


async def test_an_unroutable_batch_comes_back_as_errors_and_leaves_no_record(
    rabbitmq_queue: RabbitMQTaskQueue, queue_name: str, broker: Broker
) -> None:
    await rabbitmq_queue.connect()
    await broker.delete_family(queue_name)  # the queue vanishes under the producer
    jobs = [Job(name="lost") for _ in range(20)]
    results = await rabbitmq_queue.enqueue_many(jobs)
    assert all(result.is_err() for result in results)
    message = str(results[0].unwrap_err())
    assert "unroutable" in message
    assert queue_name in message
    assert await rabbitmq_queue.get_job(jobs[0].id) is None


async def test_an_invalid_job_fails_alone(rabbitmq_queue: RabbitMQTaskQueue) -> None:
    jobs = [Job(name="ok"), Job(id="x" * 300, name="too-long-id"), Job(name="ok")]
    results = await rabbitmq_queue.enqueue_many(jobs)
    assert results[0].is_ok()
    assert results[2].is_ok()
    error = results[1].unwrap_err()
    assert isinstance(error, TaskValidationError)
    assert "255 bytes" in str(error)


async def test_without_bulk_support_each_job_is_published_on_its_own(
    rabbitmq_queue: RabbitMQTaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A future aiormq without the channel attributes the bulk path drives.
    monkeypatch.setattr(link_module, "supports_bulk", lambda channel: False)
    jobs = [Job(name="fallback", args=(index,)) for index in range(50)]
    assert all(result.is_ok() for result in await rabbitmq_queue.enqueue_many(jobs))
    leased = await drain(rabbitmq_queue)
    assert sorted(job.id for job in leased) == sorted(job.id for job in jobs)


async def drop_connection_under_way(
    broker: Broker, queue_name: str, publishing: asyncio.Task[Any]
) -> None:
    """Force-close the producer's connection once 2,000 of its jobs are on the broker."""
    deadline = time.monotonic() + 30
    while await broker.depth(queue_name) < 2000:
        assert time.monotonic() < deadline, "the enqueues never got going"
        assert not publishing.done(), "the enqueues finished before the connection could drop"
        await asyncio.sleep(0.01)
    assert await broker.drop_connections(queue_name) >= 1
    await asyncio.wait_for(publishing, 120)


async def assert_on_the_broker(make_queue: Factory, confirmed: set[str]) -> None:
    """Every confirmed job id is delivered by a fresh consumer (copies are allowed)."""
    delivered = {job.id for job in await drain(make_queue(), quiet_for=2.0, within=120)}
    missing = confirmed - delivered
    assert not missing, f"{len(missing)} confirmed jobs are not on the broker"


@pytest.mark.slow
async def test_connection_lost_mid_batch_loses_no_ok_job(
    make_rabbitmq_queue: Factory, queue_name: str, broker: Broker, broker_admin: None
) -> None:
    producer = make_rabbitmq_queue(reconnect_interval=0.2, publish_timeout=60)
    jobs = [Job(name="survivor", args=(index,)) for index in range(30_000)]
    publishing = asyncio.create_task(producer.enqueue_many(jobs))
    await drop_connection_under_way(broker, queue_name, publishing)
    results = publishing.result()

    ok = {result.unwrap() for result in results if result.is_ok()}
    errors = [result.unwrap_err() for result in results if result.is_err()]
    assert all(isinstance(error, BackendConnectionError) for error in errors)
    assert len(ok) + len(errors) == len(jobs)
    assert len(ok) > len(jobs) // 2
    await assert_on_the_broker(make_rabbitmq_queue, ok)


async def test_concurrent_enqueues_share_socket_writes_and_all_arrive(
    rabbitmq_queue: RabbitMQTaskQueue, queue_name: str, broker: Broker
) -> None:
    writes: list[int] = []
    original = rabbitmq_queue._link.publish_many

    async def counting(messages: Any) -> Any:
        writes.append(len(messages))
        return await original(messages)

    rabbitmq_queue._link.publish_many = counting  # type: ignore[method-assign]
    jobs = [Job(name="concurrent", args=(index,)) for index in range(500)]
    results = await asyncio.gather(*(rabbitmq_queue.enqueue(job) for job in jobs))
    assert [result.unwrap() for result in results] == [job.id for job in jobs]
    assert await broker.depth(queue_name) == len(jobs)
    # The first goes straight out; the others joined it in a few shared writes.
    assert sum(writes) == len(jobs) - 1
    assert len(writes) <= 5
    leased = await drain(rabbitmq_queue)
    assert sorted(job.id for job in leased) == sorted(job.id for job in jobs)


async def test_concurrent_enqueues_to_a_vanished_queue_are_errors(
    rabbitmq_queue: RabbitMQTaskQueue, queue_name: str, broker: Broker
) -> None:
    await rabbitmq_queue.connect()
    await broker.delete_family(queue_name)
    jobs = [Job(name="lost") for _ in range(20)]
    results = await asyncio.gather(*(rabbitmq_queue.enqueue(job) for job in jobs))
    assert all(result.is_err() for result in results)
    assert all("unroutable" in str(result.unwrap_err()) for result in results)


@pytest.mark.slow
async def test_connection_lost_under_concurrent_enqueues_loses_no_ok_job(
    make_rabbitmq_queue: Factory, queue_name: str, broker: Broker, broker_admin: None
) -> None:
    producer = make_rabbitmq_queue(reconnect_interval=0.2, publish_timeout=60)
    await producer.connect()
    jobs = [Job(name="survivor", args=(index,)) for index in range(20_000)]
    outcomes: list[Any] = []

    async def enqueue_all() -> None:
        for first in range(0, len(jobs), 500):
            part = jobs[first : first + 500]
            outcomes.extend(
                await asyncio.gather(
                    *(producer.enqueue(job) for job in part), return_exceptions=True
                )
            )

    await drop_connection_under_way(broker, queue_name, asyncio.create_task(enqueue_all()))

    ok = {
        outcome.unwrap()
        for outcome in outcomes
        if not isinstance(outcome, BaseException) and outcome.is_ok()
    }
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert all(isinstance(failure, BackendConnectionError) for failure in failures)
    assert len(ok) + len(failures) == len(jobs)
    await assert_on_the_broker(make_rabbitmq_queue, ok)


class MemoryAlarm:
    """Raises and clears the broker's memory alarm (which blocks every publisher)."""

    def __init__(self, broker: Broker, watermark: str) -> None:
        self.broker = broker
        self.watermark = watermark

    async def raise_(self) -> None:
        await self.broker.ctl("set_vm_memory_high_watermark", "0.0000001")

    async def clear(self) -> None:
        await self.broker.ctl("set_vm_memory_high_watermark", self.watermark)


@pytest_asyncio.fixture
async def memory_alarm(broker: Broker, broker_admin: None) -> AsyncIterator[MemoryAlarm]:
    """The broker's memory alarm; the watermark it had is restored whatever happens."""
    environment = await broker.ctl("environment")
    found = re.search(r"\{vm_memory_high_watermark,([0-9.]+)\}", environment)
    alarm = MemoryAlarm(broker, found.group(1) if found else "0.4")
    yield alarm
    await alarm.clear()


@pytest.mark.slow
@pytest.mark.exclusive  # the memory alarm blocks every publisher of the shared broker
@pytest.mark.parametrize(
    "padding",
    [
        pytest.param(0, id="small-jobs"),
        # 2,000 jobs of 8 KB are more than the kernel's socket buffers hold: the client's writer
        # stalls on the blocked socket and aiormq's frame queue fills up behind it.
        pytest.param(8192, id="more-than-the-socket-buffers"),
    ],
)
async def test_a_blocked_broker_fails_the_batch_within_publish_timeout_without_copies(
    make_rabbitmq_queue: Factory,
    queue_name: str,
    broker: Broker,
    memory_alarm: MemoryAlarm,
    padding: int,
) -> None:
    producer = make_rabbitmq_queue(publish_timeout=1.5)
    await producer.connect()
    await memory_alarm.raise_()
    await asyncio.sleep(0.5)  # the broker tells its connections they are blocked
    jobs = [Job(name="blocked", args=(index, "x" * padding)) for index in range(2000)]
    started = time.monotonic()
    results = await producer.enqueue_many(jobs)
    took = time.monotonic() - started
    assert took < 1.5 + 2.0, f"gave up after {took:.1f} s, publish_timeout is 1.5 s"
    errors = [result.unwrap_err() for result in results]  # none can be Ok: nothing confirms
    assert all(isinstance(error, BackendConnectionError) for error in errors)
    assert "memory or disk alarm" in str(errors[0])
    with pytest.raises(BackendConnectionError):
        await producer.enqueue(Job(name="blocked-alone"))
    # Not published a second time: once the alarm clears, what was written arrives once.
    await memory_alarm.clear()
    await asyncio.sleep(1.0)
    assert await broker.depth(queue_name) < len(jobs)
    consumer = make_rabbitmq_queue()
    delivered = [job.id for job in await drain(consumer)]
    assert len(delivered) == len(set(delivered))


@pytest.mark.slow
@pytest.mark.exclusive  # the memory alarm blocks every publisher of the shared broker
async def test_a_publish_channel_opened_on_a_blocked_connection_fails_within_publish_timeout(
    make_rabbitmq_queue: Factory, memory_alarm: MemoryAlarm
) -> None:
    producer = make_rabbitmq_queue(publish_timeout=1.5)
    await producer.connect()
    await memory_alarm.raise_()
    await asyncio.sleep(0.5)
    # The first publish turns "blocking" into "blocked": the broker stops reading the
    # socket, so from now on not even a channel's opening is answered.
    with pytest.raises(BackendConnectionError):
        await producer.enqueue(Job(name="blocks-the-connection"))
    producer._link._underlay = None  # as after a channel error: the next batch opens one
    started = time.monotonic()
    results = await producer.enqueue_many([Job(name="blocked", args=(i,)) for i in range(50)])
    took = time.monotonic() - started
    assert took < 1.5 + 2.0, f"gave up after {took:.1f} s, publish_timeout is 1.5 s"
    assert all(isinstance(result.unwrap_err(), BackendConnectionError) for result in results)


async def test_concurrent_batches_share_one_publish_channel(
    rabbitmq_queue: RabbitMQTaskQueue, queue_name: str, broker: Broker
) -> None:
    await rabbitmq_queue.connect()
    link = rabbitmq_queue._link
    transport = link.connection.transport if link.connection is not None else None
    assert transport is not None
    before = set(transport.connection.channels)
    batches = [[Job(name="shared", args=(b, i)) for i in range(100)] for b in range(4)]
    outcomes = await asyncio.gather(*(rabbitmq_queue.enqueue_many(jobs) for jobs in batches))
    assert all(result.is_ok() for results in outcomes for result in results)
    opened = set(transport.connection.channels) - before
    assert len(opened) == 1, f"{len(opened)} publish channels opened for concurrent batches"
    assert await broker.depth(queue_name) == 400
