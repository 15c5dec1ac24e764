"""RabbitMQTaskQueue on a real broker: what the conformance kit does not look at.

Publisher confirms, virtual hosts, dead-lettering to ``<queue>.dlx``, delay buckets,
priority levels, poison messages, prefetch sized to free slots, coalesced acks,
quorum queues and a shared job-state store.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiormq
import pytest
import pytest_asyncio

from lexigram.contracts.tasks import (
    POISON_JOB_NAME,
    BackendConnectionError,
    ConnectionCheckingQueueProtocol,
    Job,
    JobResult,
    JobStatus,
    TaskBackendSpec,
    TaskConfigurationError,
    TaskQueueError,
    decode_job,
)
from lexigram.tasks.backends.rabbitmq import RabbitMQBackend, RabbitMQTaskQueue

Broker = Any  # the `broker` fixture's type lives in conftest.py, which tests do not import

pytestmark = pytest.mark.rabbitmq

Factory = Callable[..., RabbitMQTaskQueue]


async def lease_all(queue: RabbitMQTaskQueue, count: int, *, within: float = 10.0) -> list[Job]:
    """Lease `count` jobs through the consumer (bounded wait)."""
    jobs: list[Job] = []
    deadline = time.monotonic() + within
    while len(jobs) < count and time.monotonic() < deadline:
        jobs += await queue.dequeue_batch(count - len(jobs), timeout=deadline - time.monotonic())
    assert len(jobs) == count, f"leased {len(jobs)} of {count} jobs"
    return jobs


async def test_constructing_does_not_connect_and_errors_mask_the_password(queue_name: str) -> None:
    queue = RabbitMQTaskQueue(
        "amqp://user:s3cret@127.0.0.1:1/", queue_name, connect_timeout=0.3
    )  # nothing listens on port 1; constructing must not notice
    with pytest.raises(BackendConnectionError) as info:
        await queue.enqueue(Job(name="x"))
    message = str(info.value)
    assert "s3cret" not in message
    assert "user:***@127.0.0.1:1" in message
    assert message.endswith(".")
    await queue.close()


async def test_enqueue_ok_means_the_broker_has_it(
    broker: Broker, queue_name: str, rabbitmq_queue: RabbitMQTaskQueue
) -> None:
    results = await rabbitmq_queue.enqueue_many([Job(name="a"), Job(name="b")])
    assert all(result.is_ok() for result in results)
    assert (await rabbitmq_queue.enqueue(Job(name="c"))).is_ok()
    # Another connection sees all three at once: Ok came after the publisher confirm.
    assert await broker.depth(queue_name) == 3


async def test_virtual_host_in_url(queue_name: str, broker: Broker, broker_admin: None) -> None:
    vhost = f"lexigram-test-{uuid.uuid4().hex[:8]}"
    await broker.ctl("add_vhost", vhost)
    try:
        await broker.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        url = broker.url_for_vhost(vhost)
        queue = RabbitMQTaskQueue(url, queue_name)
        assert queue.target.vhost == vhost
        job = Job(name="in-vhost")
        assert (await queue.enqueue(job)).is_ok()
        listing = await broker.ctl("list_queues", "-p", vhost, "name", "messages", "-q")
        assert f"{queue_name}\t1" in listing
        leased = await queue.dequeue()
        assert leased is not None
        assert leased.id == job.id
        await queue.ack(leased.id)
        await queue.close()
    finally:
        await broker.ctl("delete_vhost", vhost)


async def test_nack_without_requeue_dead_letters_to_dlx(
    amqp_url: str, queue_name: str, rabbitmq_queue: RabbitMQTaskQueue
) -> None:
    job = Job(name="doomed", args=(1,))
    await rabbitmq_queue.enqueue(job)
    (leased,) = await lease_all(rabbitmq_queue, 1)
    await rabbitmq_queue.nack(leased.id, requeue=False)
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        message = None
        for _ in range(50):  # the reject is asynchronous: poll the broker briefly
            message = await channel.basic_get(f"{queue_name}.dlx", no_ack=True)
            if message.delivery_tag is not None:
                break
            await asyncio.sleep(0.02)
        assert message is not None
        assert message.delivery_tag is not None, "the rejected job never reached <queue>.dlx"
        assert decode_job(message.body).id == job.id
        headers = message.header.properties.headers or {}
        assert headers["x-first-death-reason"] == "rejected"
    finally:
        await connection.close()
    assert await rabbitmq_queue.count(queue_name) == 0


async def test_delayed_job_waits_in_a_bucket_and_is_never_early(
    broker: Broker, queue_name: str, rabbitmq_queue: RabbitMQTaskQueue
) -> None:
    due = time.time() + 1.3
    job = Job(name="later", scheduled_at=due)
    await rabbitmq_queue.enqueue(job)
    # 1.3 s goes to the 1024 ms bucket first, then hops through smaller ones.
    assert await broker.depth(f"{queue_name}.delay.1024ms") == 1
    assert await broker.depth(queue_name) == 0
    assert await rabbitmq_queue.get_task_count() == 1
    (leased,) = await lease_all(rabbitmq_queue, 1)
    assert time.time() >= due
    assert leased.id == job.id
    assert leased.delivery_count == 1  # hops through buckets are not deliveries


async def test_delay_longer_than_one_hop_keeps_other_jobs_flowing(
    rabbitmq_queue: RabbitMQTaskQueue,
) -> None:
    far = Job(name="far", scheduled_at=time.time() + 86400 * 40)  # beyond the largest bucket
    soon = Job(name="soon", scheduled_at=time.time() + 0.2)
    now = Job(name="now")
    for job in (far, soon, now):
        await rabbitmq_queue.enqueue(job)
    got = [job.name for job in await lease_all(rabbitmq_queue, 2)]
    assert got == ["now", "soon"]
    assert await rabbitmq_queue.count(rabbitmq_queue.queue_name, JobStatus.PENDING) == 1
    found = await rabbitmq_queue.get_job(far.id)
    assert found is not None
    assert found.scheduled_at == far.scheduled_at


async def test_priorities_collapse_onto_queue_levels_in_order(
    make_rabbitmq_queue: Factory,
) -> None:
    queue = make_rabbitmq_queue(max_priority=3)
    # With 3 levels: 0 -> 0, 1 -> 1, 5 -> 2, 200 and 255 -> 3 (FIFO between those two).
    jobs = [Job(name=f"p{p}", priority=p) for p in (0, 200, 1, 255, 5)]
    for job in jobs:
        await queue.enqueue(job)
    order = []
    while (leased := await queue.dequeue()) is not None:
        order.append(leased.name)
        await queue.ack(leased.id)
    assert order == ["p200", "p255", "p5", "p1", "p0"]


async def test_poison_message_is_handed_out_not_raised(
    amqp_url: str, queue_name: str, rabbitmq_queue: RabbitMQTaskQueue
) -> None:
    await rabbitmq_queue.connect()
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        props = aiormq.spec.Basic.Properties(message_id="bad-1", delivery_mode=2)
        await channel.basic_publish(b"\xffnot json", routing_key=queue_name, properties=props)
    finally:
        await connection.close()
    (poison,) = await lease_all(rabbitmq_queue, 1)
    assert poison.name == POISON_JOB_NAME
    assert poison.id == "bad-1"
    assert poison.queue_name == queue_name
    assert "not valid JSON" in (poison.last_error or "")
    await rabbitmq_queue.ack(poison.id)
    assert await rabbitmq_queue.count(queue_name) == 0


async def test_prefetch_follows_free_slots(
    broker: Broker, queue_name: str, make_rabbitmq_queue: Factory
) -> None:
    producer, worker = make_rabbitmq_queue(), make_rabbitmq_queue()
    await producer.enqueue_many([Job(name=f"j{i}") for i in range(10)])
    await lease_all(worker, 2)
    # The worker holds its 2 jobs and nothing more: 8 stay on the broker for others.
    assert await broker.depth(queue_name) == 8
    await lease_all(worker, 3)
    assert await broker.depth(queue_name) == 5


async def test_idle_consumer_hands_back_what_the_broker_pushed(
    make_rabbitmq_queue: Factory,
) -> None:
    first, second = make_rabbitmq_queue(), make_rabbitmq_queue()
    await first.enqueue(Job(name="warm-up"))
    (job,) = await lease_all(first, 1)
    await first.ack(job.id)  # frees a prefetch slot while first's consumer is subscribed
    jobs = [Job(name=f"j{i}") for i in range(3)]
    await first.enqueue_many(jobs)
    # `first` stops asking; whatever the broker pushed to it must reach `second`.
    got = await lease_all(second, 3)
    assert sorted(job.id for job in got) == sorted(job.id for job in jobs)


async def test_coalesced_acks_settle_every_job(
    broker: Broker, queue_name: str, make_rabbitmq_queue: Factory
) -> None:
    queue = make_rabbitmq_queue()
    await queue.enqueue_many([Job(name=f"j{i}") for i in range(300)])
    done = 0
    while done < 300:
        batch = await queue.dequeue_batch(64, timeout=5)
        assert batch
        # Finish out of order, concurrently: runs become multiple-acks, gaps single acks.
        await asyncio.gather(*(queue.ack(job.id) for job in reversed(batch)))
        done += len(batch)
    await queue.close()  # an unacked delivery would now go back to the queue
    assert await broker.depth(queue_name) == 0


async def test_delay_mode_plugin_requires_the_plugin(make_rabbitmq_queue: Factory) -> None:
    auto = make_rabbitmq_queue(delay_mode="auto")
    await auto.connect()
    assert auto._link.use_plugin is False  # this broker has no delayed-message plugin
    job = Job(name="later", scheduled_at=time.time() + 0.1)
    await auto.enqueue(job)
    assert (await lease_all(auto, 1))[0].id == job.id
    plugin = make_rabbitmq_queue(delay_mode="plugin")
    with pytest.raises(TaskConfigurationError, match="rabbitmq_delayed_message_exchange"):
        await plugin.connect()


async def test_redeclare_with_other_arguments_is_a_configuration_error(
    make_rabbitmq_queue: Factory,
) -> None:
    await make_rabbitmq_queue(max_priority=10).connect()
    with pytest.raises(TaskConfigurationError, match="other arguments"):
        await make_rabbitmq_queue(max_priority=5).connect()


async def test_the_connection_check_declares_the_queue_and_reads_no_job(
    make_rabbitmq_queue: Factory,
) -> None:
    # The CLI's start-up check (`ConnectionCheckingQueueProtocol`): the first connects
    # and declares like any first call (that is the check), the second asks the broker
    # about the queue alone; both leave the waiting jobs, their delay buckets and the
    # state store untouched.
    producer, checker = make_rabbitmq_queue(), make_rabbitmq_queue()
    assert isinstance(checker, ConnectionCheckingQueueProtocol)
    for n in range(3):
        assert (await producer.enqueue(Job(name="waiting", args=(n,)))).is_ok()
    delayed = Job(name="later", scheduled_at=time.time() + 60)
    assert (await producer.enqueue(delayed)).is_ok()
    await checker.check_connection()
    await checker.check_connection()
    assert await checker.count(checker.queue_name, JobStatus.PENDING) == 4
    assert sorted(job.args[0] for job in await lease_all(checker, 3)) == [0, 1, 2]


async def test_quorum_queue_round_trip(
    broker: Broker, queue_name: str, make_rabbitmq_queue: Factory
) -> None:
    queue = make_rabbitmq_queue(queue_type="quorum")
    ready, later = Job(name="ready"), Job(name="later", scheduled_at=time.time() + 0.5)
    await queue.enqueue(ready)
    await queue.enqueue(later)
    assert await broker.depth(f"{queue_name}.delay.256ms") == 1
    (first,) = await lease_all(queue, 1)
    assert first.id == ready.id
    await queue.nack(first.id, requeue=True)
    leased = await lease_all(queue, 2)  # a prefetch change: quorum re-subscribes
    by_id = {job.id: job for job in leased}
    assert by_id[ready.id].delivery_count == 2
    assert by_id[later.id].delivery_count == 1
    await queue.nack(ready.id, requeue=False)
    await queue.ack(later.id)
    assert await queue.count(queue_name) == 0
    for _ in range(50):  # the reject is asynchronous: poll the broker briefly
        if await broker.depth(f"{queue_name}.dlx") == 1:
            break
        await asyncio.sleep(0.02)
    assert await broker.depth(f"{queue_name}.dlx") == 1


@pytest_asyncio.fixture
async def shared_backend(
    amqp_url: str, redis_url: str, queue_name: str, broker: Broker
) -> AsyncIterator[tuple[RabbitMQBackend, TaskBackendSpec]]:
    prefix = f"lexigram-test-{uuid.uuid4().hex[:8]}"
    factory = RabbitMQBackend()
    spec = TaskBackendSpec(
        name="notifications",
        type="rabbitmq",
        url=amqp_url,
        queue_name=queue_name,
        options={
            "visibility_timeout": 2.0,
            "state_store": {"type": "redis", "url": redis_url, "options": {"key_prefix": prefix}},
        },
    )
    yield factory, spec
    handle = factory.create_queue(spec)
    store = handle.state_store
    await handle.close()
    for key in await store.keys(""):
        await store.delete(key)
    await store.close()  # type: ignore[attr-defined]
    await broker.delete_family(queue_name)


async def test_shared_state_store_from_options_spans_handles(
    shared_backend: tuple[RabbitMQBackend, TaskBackendSpec],
) -> None:
    factory, spec = shared_backend
    producer, worker = factory.create_queue(spec), factory.create_queue(spec)
    # Two store objects (each queue closes its own) over the same Redis records.
    assert producer.state_store is not worker.state_store
    try:
        job = Job(name="shared")
        await producer.enqueue(job)
        (leased,) = await lease_all(worker, 1)
        found = await producer.get_job(job.id)
        assert found is not None
        assert found.status is JobStatus.RUNNING
        assert await producer.count(spec.queue_name, JobStatus.RUNNING) == 1
        assert await producer.delete_job(job.id) is True
        assert await worker.extend_lease(leased.id) is False  # the worker stops the handler
        await worker.nack(leased.id, requeue=True)  # must not resurrect it
        assert await worker.dequeue_batch(1, timeout=0.3) == []
        assert await producer.count(spec.queue_name) == 0
    finally:
        await producer.close()
        await worker.close()


async def test_bulk_enqueue_with_a_shared_state_store_keeps_ids_and_keys_unique(
    shared_backend: tuple[RabbitMQBackend, TaskBackendSpec],
) -> None:
    factory, spec = shared_backend
    producer, other = factory.create_queue(spec), factory.create_queue(spec)
    try:
        twice = Job(name="same-id")
        keyed = [Job(name="keyed", idempotency_key="once") for _ in range(3)]
        plain = [Job(name="plain", args=(index,)) for index in range(300)]
        batch = [twice, Job(id=twice.id, name="same-id"), *keyed, *plain]
        results = [result.unwrap() for result in await producer.enqueue_many(batch)]
        assert results[:2] == [twice.id, twice.id]
        holder = results[2]
        assert holder in {job.id for job in keyed}
        assert results[2:5] == [holder] * 3  # one key, one job, whichever won the race
        assert results[5:] == [job.id for job in plain]
        # 302 distinct jobs on the broker, each visible from another handle.
        assert await other.count(spec.queue_name) == 302
        found = await other.get_job(plain[-1].id)
        assert found is not None
        assert found.args == (299,)
    finally:
        await producer.clear()
        await producer.close()
        await other.close()


async def test_stores_option_pairs_the_queue_with_redis_stores(
    amqp_url: str, redis_url: str, queue_name: str, broker: Broker
) -> None:
    prefix = f"lexigram-test-{uuid.uuid4().hex[:8]}"
    stores = {"type": "redis", "url": redis_url, "options": {"key_prefix": prefix}}
    spec = TaskBackendSpec(
        type="rabbitmq", url=amqp_url, queue_name=queue_name, options={"stores": stores}
    )
    first, second = RabbitMQBackend(), RabbitMQBackend()
    writer, reader = first.create_result_store(spec), second.create_result_store(spec)
    queue = first.create_queue(spec)
    try:
        await writer.store("job-1", JobResult.ok({"sent": True}))
        found = await reader.get("job-1")  # another object, same Redis: a shared store
        assert found is not None
        assert found.data == {"sent": True}
        # The job-state records went to the same Redis (the stores backend's cache).
        await queue.enqueue(Job(id="job-2", name="x"))
        other = second.create_queue(spec)
        waiting = await other.get_job("job-2")
        assert waiting is not None
        await other.close()
    finally:
        await writer.delete("job-1")
        for store in (writer, reader):
            await store.close()
        cache = queue.state_store
        for key in await cache.keys(""):
            await cache.delete(key)
        await cache.close()  # type: ignore[attr-defined]
        await queue.close()
        await broker.delete_family(queue_name)


async def queue_exists(url: str, name: str) -> bool:
    """True if the broker has a queue called `name` (passive declare)."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        try:
            await channel.queue_declare(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True
    finally:
        await connection.close()


async def test_delete_queues_removes_the_family_but_not_waiting_jobs_by_default(
    make_rabbitmq_queue: Factory, amqp_url: str, queue_name: str
) -> None:
    queue = make_rabbitmq_queue()
    await queue.enqueue(Job(name="waits"))
    await queue.enqueue(Job(name="later", scheduled_at=time.time() + 60))  # a delay bucket
    with pytest.raises(TaskQueueError, match="still holds 2 job"):
        await queue.delete_queues()
    assert await queue_exists(amqp_url, queue_name)

    await queue.clear()
    await queue.delete_queues()
    for name in (queue_name, f"{queue_name}.dlx", f"{queue_name}.delay.32768ms"):
        assert not await queue_exists(amqp_url, name), name
    await queue.close()

    again = make_rabbitmq_queue()  # a new object declares the family again
    assert (await again.enqueue(Job(name="fresh"))).is_ok()
    await again.delete_queues(if_empty=False)
    assert not await queue_exists(amqp_url, queue_name)


async def test_job_running_when_its_queue_is_deleted_ends_with_its_records(
    make_rabbitmq_queue: Factory, queue_name: str, amqp_url: str
) -> None:
    """A job whose queue was deleted while it ran is acked and its records go.

    The consumer, cancelled by the broker, used to subscribe again on its own channel:
    the basic.consume of the missing queue closed that channel, the job's ack failed,
    and its record said "pending" until `state_ttl`.
    """
    queue = make_rabbitmq_queue()
    job = Job(name="long")
    await queue.enqueue(job)
    (held,) = await queue.dequeue_batch(1, timeout=5)
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        await channel.queue_delete(queue_name)
        await asyncio.sleep(0.5)  # the broker's cancel reaches the consumer
    finally:
        await connection.close()
    assert await queue.extend_lease(held.id, lease_token=held.lease_token) is True
    assert await queue.ack(held.id, lease_token=held.lease_token) is True
    assert await queue.get_job(held.id) is None
    assert await queue.count(queue_name) == 0
    later = Job(name="after")  # the queue serves again
    assert (await queue.enqueue(later)).is_ok()
    (again,) = await queue.dequeue_batch(1, timeout=5)
    assert again.id == later.id
    assert await queue.ack(again.id, lease_token=again.lease_token) is True
