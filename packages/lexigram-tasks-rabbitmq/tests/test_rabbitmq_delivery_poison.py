"""A delivery turns its body into a job through `decode_or_poison`: never an error.

An exception raised out of `Delivery` would fail the consumer callback and leave the
message unacknowledged, to come back at every reconnect; whatever decoding the body
raises, the delivery holds the poison stand-in instead.
"""

from __future__ import annotations

import pytest

from lexigram.contracts.tasks import POISON_JOB_NAME, Job, _codec, encode_job
from lexigram.tasks.backends.rabbitmq._delivery import ChannelAcks, Delivery


class _Channel:
    is_closed = False


class _Properties:
    headers: dict[str, object] | None = None
    message_id = "m-1"


class _Header:
    properties = _Properties()


class _Message:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.delivery_tag = 5
        self.redelivered = False
        self.header = _Header()


def _delivery(body: bytes) -> Delivery:
    acks = ChannelAcks(_Channel(), in_order=True)  # type: ignore[arg-type]
    return Delivery(_Message(body), acks, "tasks")  # type: ignore[arg-type]


def test_an_unexpected_error_while_decoding_makes_the_delivery_poison(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing(data: bytes | str) -> Job:
        msg = "the decoder blew up"
        raise RuntimeError(msg)

    monkeypatch.setattr(_codec, "decode_job", failing)
    delivery = _delivery(encode_job(Job(id="j", name="send")))
    assert delivery.job.name == POISON_JOB_NAME
    assert delivery.job.id == "m-1"
    assert delivery.job.queue_name == "tasks"
    assert "RuntimeError: the decoder blew up" in (delivery.job.last_error or "")
    assert delivery.envelope is None
    assert delivery.job.delivery_count == 1


def test_a_body_that_decodes_is_kept_as_its_text() -> None:
    body = encode_job(Job(id="j", name="send", args=("é",)))
    delivery = _delivery(body)
    assert (delivery.job.id, delivery.job.name, delivery.job.args) == ("j", "send", ("é",))
    assert delivery.envelope == body.decode()
    # A UTF-8 BOM (which the decoder skips) is not kept in the text either.
    assert _delivery(b"\xef\xbb\xbf" + body).envelope == body.decode()


async def test_get_job_shows_a_recorded_envelope_that_does_not_decode_as_poison() -> None:
    # No broker is reached: get_job reads the in-flight map, then the job-state store.
    from lexigram.tasks.backends.rabbitmq import LocalStateStore, RabbitMQTaskQueue

    store = LocalStateStore()
    queue = RabbitMQTaskQueue("amqp://guest:guest@127.0.0.1:1/", "tasks", state_store=store)
    states = queue._states
    await states.admit("bad-wait", '{"not": "an envelope"}', 0.0)
    await states.hand_out([("bad-run", "\u00ff{", False)], lease=30.0)
    waiting = await queue.get_job("bad-wait")
    running = await queue.get_job("bad-run")
    assert waiting is not None
    assert waiting.name == POISON_JOB_NAME
    assert running is not None
    assert running.name == POISON_JOB_NAME
    assert (waiting.id, waiting.queue_name) == ("bad-wait", "tasks")
    assert running.id == "bad-run"
