"""A delivery whose body is JSON in another encoding than UTF-8 is poison, never left unacked.

The decoder reads JSON in UTF-16 too, but no producer of lexigram-tasks writes it and
the backend keeps a delivery's envelope as UTF-8 text (to re-publish it): such a body
used to raise out of the consumer callback, so the message stayed unacknowledged and
came back at every reconnect, never dead-lettered.
"""

from __future__ import annotations

import json

from lexigram.contracts.tasks import POISON_JOB_NAME
from lexigram.tasks.backends.rabbitmq._delivery import ChannelAcks, Delivery


class _Channel:
    is_closed = False


class _Properties:
    headers: dict[str, object] | None = None
    message_id = "m-utf16"


class _Header:
    properties = _Properties()


class _Message:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.delivery_tag = 3
        self.redelivered = False
        self.header = _Header()


def test_a_utf16_envelope_is_handed_out_as_poison() -> None:
    body = json.dumps({"v": 1, "job": {"id": "j", "name": "send"}}).encode("utf-16")
    acks = ChannelAcks(_Channel(), in_order=True)  # type: ignore[arg-type]
    delivery = Delivery(_Message(body), acks, "tasks")  # type: ignore[arg-type]
    assert delivery.job.name == POISON_JOB_NAME
    assert delivery.job.id == "m-utf16"
    assert delivery.envelope is None
    assert delivery.restamp is False
