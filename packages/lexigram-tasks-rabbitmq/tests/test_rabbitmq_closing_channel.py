"""A delivery whose channel is closing is the broker's again: never run, never re-published.

aiormq closes a channel itself when an RPC on it times out (a paused broker): it sends
Channel.Close and refuses acks at once, but ``is_closed`` turns True only with the
broker's CloseOk. A broker that resumes first sends the deliveries it had queued before
reading the Close; the chaos run's broker pause ran such a delivery in one worker while
the broker requeued it for another, and re-published (restamped) it, leaving two copies
that then ran at the same time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lexigram.contracts.tasks import Job, encode_job
from lexigram.tasks.backends.rabbitmq import RabbitMQOptions, RabbitMQTaskQueue
from lexigram.tasks.backends.rabbitmq._connection import AMQPLink
from lexigram.tasks.backends.rabbitmq._consumer import DeliveryBuffer
from lexigram.tasks.backends.rabbitmq._delivery import ChannelAcks, Delivery, closing_started

URL = "amqp://guest:guest@localhost:5672/"


class FakeChannel:
    """A channel as aiormq keeps it: closed only with the CloseOk, closing before that."""

    def __init__(self, *, closing: bool) -> None:
        self.is_closed = False
        event = asyncio.Event()
        if closing:
            event.set()
        # The attribute aiormq's Channel sets (name-mangled `__close_event`).
        setattr(self, "_Channel__close_event", event)  # noqa: B010 - a mangled name


class FakeProperties:
    headers: dict[str, object] | None = None
    message_id = "m-1"


class FakeHeader:
    properties = FakeProperties()


class FakeMessage:
    def __init__(self, job: Job, *, redelivered: bool, channel: Any) -> None:
        self.body = encode_job(job)
        self.delivery_tag = 3
        self.redelivered = redelivered
        self.header = FakeHeader()
        self.channel = channel


def delivery_on(channel: FakeChannel, *, redelivered: bool = False) -> Delivery:
    acks = ChannelAcks(channel, in_order=True)  # type: ignore[arg-type]
    message = FakeMessage(Job(name="x"), redelivered=redelivered, channel=channel)
    return Delivery(message, acks, "tasks")  # type: ignore[arg-type]


def buffer_sending_back_to(sent: list[Delivery]) -> DeliveryBuffer:
    link = AMQPLink(URL, "jobs", RabbitMQOptions())
    return DeliveryBuffer(link, send_back=sent.append, holding=lambda: True)


def test_a_channel_aiormq_began_to_close_is_no_longer_alive() -> None:
    closing, open_ = FakeChannel(closing=True), FakeChannel(closing=False)

    assert closing_started(closing)  # type: ignore[arg-type]
    assert not ChannelAcks(closing, in_order=True).alive  # type: ignore[arg-type]
    assert ChannelAcks(open_, in_order=True).alive  # type: ignore[arg-type]
    assert delivery_on(closing).stale
    assert not delivery_on(open_).stale


def test_a_channel_without_the_flag_is_judged_by_is_closed_alone() -> None:
    channel = type("Plain", (), {"is_closed": False})()

    assert not closing_started(channel)
    assert ChannelAcks(channel, in_order=True).alive


def test_a_delivery_from_a_closing_channel_is_not_buffered() -> None:
    sent: list[Delivery] = []
    buffer = buffer_sending_back_to(sent)

    buffer.push(delivery_on(FakeChannel(closing=True)))

    assert len(buffer) == 0
    assert buffer.take(10) == []
    assert sent == []


def test_a_redelivery_from_a_closing_channel_is_not_restamped() -> None:
    sent: list[Delivery] = []
    buffer = buffer_sending_back_to(sent)
    redelivered = delivery_on(FakeChannel(closing=True), redelivered=True)
    assert redelivered.restamp

    buffer.push(redelivered)

    assert sent == []  # restamping would publish a copy beside the requeued message


def test_a_buffered_delivery_whose_channel_begins_to_close_is_not_taken() -> None:
    buffer = buffer_sending_back_to([])
    channel = FakeChannel(closing=False)
    buffer.push(delivery_on(channel))
    assert len(buffer) == 1

    getattr(channel, "_Channel__close_event").set()  # noqa: B009 - a mangled name

    assert buffer.take(10) == []


async def test_sending_back_a_delivery_of_a_closing_channel_publishes_no_copy() -> None:
    queue = RabbitMQTaskQueue(URL, queue_name="jobs")  # lazy: nothing connects
    published: list[Job] = []

    async def publish(job: Job, body: bytes, delay: float, *, copy: int = 0) -> Any:
        published.append(job)
        return None

    queue._publisher.publish = publish  # type: ignore[method-assign]

    await queue._republisher.send_back(delivery_on(FakeChannel(closing=True), redelivered=True))

    assert published == []
