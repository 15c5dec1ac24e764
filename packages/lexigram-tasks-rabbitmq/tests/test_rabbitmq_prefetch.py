"""The consumer's prefetch: raised at once, lowered only past a slack, always recorded."""

from __future__ import annotations

from typing import Any

import pytest

from lexigram.tasks.backends.rabbitmq import RabbitMQOptions
from lexigram.tasks.backends.rabbitmq._connection import AMQPLink
from lexigram.tasks.backends.rabbitmq._consumer import DeliveryBuffer, prefetch_target
from lexigram.tasks.backends.rabbitmq._delivery import ChannelAcks


class FakeChannel:
    """The calls of a subscribed consumer's channel that a prefetch change makes."""

    def __init__(self) -> None:
        self.is_closed = False
        self.qos: list[tuple[int, bool]] = []

    async def basic_qos(self, *, prefetch_count: int, global_: bool) -> None:
        self.qos.append((prefetch_count, global_))


def subscribed(prefetch: int) -> tuple[DeliveryBuffer, FakeChannel]:
    """A buffer whose consumer is subscribed (classic queue) with `prefetch`."""
    link = AMQPLink("amqp://guest:guest@localhost:5672/", "jobs", RabbitMQOptions())
    buffer = DeliveryBuffer(link, send_back=lambda delivery: None, holding=lambda: True)
    channel = FakeChannel()
    fake: Any = channel
    buffer._channel = fake
    buffer._acks = ChannelAcks(fake, in_order=True)
    buffer._consuming = True
    buffer._prefetch = prefetch
    return buffer, channel


@pytest.mark.parametrize(
    ("wanted", "current", "expected"),
    [
        (1, 0, 1),  # first subscribe, small: exact
        (2, 0, 2),
        (5, 2, 5),  # raised at once, no slack under 10
        (3, 5, 3),  # lowered: no slack under 10
        (100, 0, 105),  # first subscribe: the middle of 100..110
        (100, 110, 110),  # within the slack: kept
        (100, 100, 100),
        (104, 114, 114),
        (111, 110, 116),  # below what is wanted: raised at once, to the middle
        (90, 105, 94),  # more than a tenth above: lowered to the middle
        (0, 0, 1),  # at least one
    ],
)
def test_prefetch_target(wanted: int, current: int, expected: int) -> None:
    assert prefetch_target(wanted, current) == expected


async def test_a_prefetch_that_wobbles_within_the_slack_sends_no_qos() -> None:
    buffer, channel = subscribed(105)
    for wanted in (100, 101, 103, 102, 100, 104, 105, 96):
        await buffer.ensure_consuming(wanted)
    assert channel.qos == []
    await buffer.ensure_consuming(106)  # more than the channel allows: raised now
    assert channel.qos == [(111, True)]
    assert buffer._prefetch == 111
    await buffer.ensure_consuming(60)  # far fewer free slots: lowered
    assert channel.qos[-1] == (63, True)
    assert buffer._prefetch == 63


async def test_making_room_for_the_sync_message_records_the_prefetch() -> None:
    buffer, channel = subscribed(40)
    await buffer._make_room()
    assert channel.qos == [(41, True)]
    assert buffer._prefetch == 41
    await buffer.ensure_consuming(41)  # what the broker has now: nothing to send
    assert channel.qos == [(41, True)]
