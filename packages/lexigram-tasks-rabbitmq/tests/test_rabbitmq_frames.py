"""The bulk path's hand-packed publish frames are byte for byte what pamqp marshals."""

from __future__ import annotations

import pamqp.frame
import pytest
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from lexigram.tasks.backends.rabbitmq._frames import Outgoing, PublishEncoder

FRAME_MAX = 131_072


def pamqp_publish(
    channel: int,
    frame_max: int,
    message: Outgoing,
    *,
    mandatory: bool,
    content_type: str,
    delivery_mode: int,
) -> bytes:
    """The same publish through pamqp, split the way aiormq splits bodies."""
    properties = Basic.Properties(
        content_type=content_type,
        delivery_mode=delivery_mode,
        priority=message.priority,
        message_id=message.message_id,
    )
    frames: list[object] = [
        Basic.Publish(exchange="", routing_key=message.routing_key, mandatory=mandatory),
        ContentHeader(properties=properties, body_size=len(message.body)),
    ]
    step = frame_max - 8
    frames += [ContentBody(message.body[i : i + step]) for i in range(0, len(message.body), step)]
    return b"".join(pamqp.frame.marshal(frame, channel) for frame in frames)  # type: ignore[arg-type]


def assert_same_as_pamqp(
    message: Outgoing,
    *,
    channel: int = 1,
    frame_max: int = FRAME_MAX,
    mandatory: bool = True,
    delivery_mode: int = 2,
) -> None:
    """`PublishEncoder` packs exactly the bytes pamqp marshals for the same publish."""
    kind = "application/json"
    encoder = PublishEncoder(
        channel, frame_max, mandatory=mandatory, content_type=kind, delivery_mode=delivery_mode
    )
    expected = pamqp_publish(
        channel,
        frame_max,
        message,
        mandatory=mandatory,
        content_type=kind,
        delivery_mode=delivery_mode,
    )
    assert encoder.encode(message) == expected


@pytest.mark.parametrize("priority", [None, 0, 7, 255])
@pytest.mark.parametrize("mandatory", [True, False])
@pytest.mark.parametrize("delivery_mode", [1, 2])
def test_frames_match_pamqp(priority: int | None, mandatory: bool, delivery_mode: int) -> None:
    message = Outgoing(
        body=b'{"v":1,"job":{"id":"x"}}',
        routing_key="emails",
        message_id="0b5c6a3e-8f1e-4c53-9c1a-4bb5f1d2c0de",
        priority=priority,
    )
    assert_same_as_pamqp(message, channel=3, mandatory=mandatory, delivery_mode=delivery_mode)


@pytest.mark.parametrize("size", [0, 1, 4087, 4088, 4089, 10_000])
def test_bodies_are_split_at_frame_max(size: int) -> None:
    message = Outgoing(
        body=bytes(range(256)) * (size // 256) + b"x" * (size % 256),
        routing_key="q.delay.1024ms",
        message_id="id-1",
        priority=None,
    )
    assert_same_as_pamqp(message, frame_max=4096)


def test_unicode_routing_key_and_id_are_utf8_short_strings() -> None:
    message = Outgoing(body=b"{}", routing_key="fila-ç", message_id="ид-1", priority=1)
    assert_same_as_pamqp(message, channel=9)


def test_a_message_id_over_255_bytes_is_refused_with_the_reason() -> None:
    encoder = PublishEncoder(
        1, FRAME_MAX, mandatory=True, content_type="application/json", delivery_mode=2
    )
    with pytest.raises(ValueError, match="longer than 255 bytes"):
        encoder.encode(Outgoing(body=b"{}", routing_key="q", message_id="x" * 256, priority=None))


def test_frame_max_must_leave_room_for_a_body() -> None:
    with pytest.raises(ValueError, match="no room"):
        PublishEncoder(1, 8, mandatory=True, content_type="a", delivery_mode=2)
